//! Forge clients: list a repository's branch heads (GitHub, GitLab, Gitea, plain Git).
