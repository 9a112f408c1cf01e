#!/usr/bin/env bash
# Makes (once) a virtualenv with the Python packages we interoperate with (outworx-hooks 1.5,
# FastAPI, standardwebhooks, fastapihooks), and prints the path of its python. Used by the
# interop tests (tests/python_interop.rs) and the benches. Tests calling it at once wait
# for each other (flock), so the virtualenv is made once.
#   usage: venv.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: venv.sh DIR}
req="$here/requirements.txt"
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
stamp="$dir/.requirements"
if [ -x "$dir/bin/python" ] && cmp -s "$req" "$stamp"; then
  echo "$dir/bin/python"
  exit 0
fi
echo "creating $dir (pip install -r $req) ..." >&2
python3 -m venv "$dir" >&2
"$dir/bin/python" -m pip install -q -r "$req" >&2
cp "$req" "$stamp"
echo "$dir/bin/python"
