#!/usr/bin/env bash
# sentry end to end, self-contained: no internet, no cluster.
#
# Creates two local bare repositories — one watched ("app"), one holding the deployment script
# ("deploy") — then runs `sentry poll --once` (records a baseline), pushes a commit to app, and
# runs it again: the new commit is detected and deployed. Everything lives in a temporary
# directory that is removed afterwards (set KEEP=1 to keep it).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building sentry"
cargo build --quiet
# Where cargo put it: target/ by default, elsewhere with CARGO_TARGET_DIR or build.target-dir.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
sentry="${target_dir:-$PWD/target}/debug/sentry"
[ -x "$sentry" ] || { echo "cannot find the sentry binary cargo built (looked at $sentry)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sentry-quickstart.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "==> keeping $work"; else trap 'rm -rf "$work"' EXIT; fi

export GIT_AUTHOR_NAME=quickstart GIT_AUTHOR_EMAIL=quickstart@example.invalid
export GIT_COMMITTER_NAME=quickstart GIT_COMMITTER_EMAIL=quickstart@example.invalid
export GIT_CONFIG_NOSYSTEM=1 HOME="$work"

commit_and_push() { # repo-dir message
  git -C "$1" add -A
  git -C "$1" commit --quiet -m "$2"
  git -C "$1" push --quiet origin HEAD:main
}

echo "==> creating repositories in $work"
git init --quiet --bare -b main "$work/app.git"
git init --quiet --bare -b main "$work/deploy.git"
git clone --quiet "$work/app.git" "$work/app" 2>/dev/null
echo "v1" > "$work/app/VERSION"
commit_and_push "$work/app" "app v1"
git clone --quiet "$work/deploy.git" "$work/deploy" 2>/dev/null
cat > "$work/deploy/deploy.sh" <<'SCRIPT'
#!/bin/sh
# A stand-in for `kubectl apply`: records what would be deployed.
echo "deploying $SENTRY_REPO $SENTRY_BRANCH@$SENTRY_COMMIT (was ${SENTRY_PREVIOUS_COMMIT:-nothing}) to $TARGET"
echo "$SENTRY_COMMIT" >> "$DEPLOY_LOG"
SCRIPT
chmod +x "$work/deploy/deploy.sh"
commit_and_push "$work/deploy" "deployment script"

cat > "$work/sentry.yaml" <<YAML
global:
  tmp_dir: $work/tmp
  state: $work/sentry-state.json
  timeout: 60
repositories:
  - name: app
    monitor:
      repo_url: file://$work/app.git
      branches: ["main"]
      repo_type: git
    deploy:
      qa_repo_url: file://$work/deploy.git
      qa_repo_branch: main
      repo_type: git
      project_name: app
      commands:
        - ./deploy.sh
      env:
        TARGET: staging
        DEPLOY_LOG: $work/deployed.log
YAML
export SENTRY_CONFIG_PATH="$work/sentry.yaml"

echo
echo "==> sentry validate"
"$sentry" validate
echo
echo "==> first poll: records the current head as the baseline, deploys nothing"
"$sentry" poll --once
echo
echo "==> pushing a new commit to app"
echo "v2" > "$work/app/VERSION"
commit_and_push "$work/app" "app v2"
new_head=$(git -C "$work/app" rev-parse HEAD)
echo "    new head: $new_head"
echo
echo "==> second poll: detects the commit and deploys it"
"$sentry" poll --once
echo
echo "==> sentry status"
"$sentry" status
echo
if grep -qx "$new_head" "$work/deployed.log" 2>/dev/null; then
  echo "OK: commit ${new_head:0:8} was detected and the deployment succeeded"
else
  echo "FAILED: the deployment of ${new_head:0:8} did not happen" >&2
  exit 1
fi
