#!/usr/bin/env bash
# Makes (once) a copy of this directory with its npm packages (svix, svix-react, react, vite:
# exact versions in package-lock.json) and the svix-react page built, and prints its path.
# Tests calling it at once wait for each other (flock).
#   usage: setup.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: setup.sh DIR}
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
stamp="$dir/.stamp"
sum=$(cat "$here/package.json" "$here/package-lock.json" "$here/index.html" "$here/vite.config.js" "$here/src/main.jsx" "$here/client.mjs" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ] && [ -f "$dir/dist/index.html" ]; then
  echo "$dir"
  exit 0
fi
echo "building $dir (npm ci, vite build) ..." >&2
mkdir -p "$dir/src"
cp "$here/package.json" "$here/package-lock.json" "$here/index.html" "$here/vite.config.js" "$here/client.mjs" "$dir/"
cp "$here/src/main.jsx" "$dir/src/"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2 && npx vite build >&2)
echo "$sum" > "$stamp"
echo "$dir"
