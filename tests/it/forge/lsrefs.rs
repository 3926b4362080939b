//! Plain Git over http(s) listed in process with protocol v2 `ls-refs` (issue 21).
