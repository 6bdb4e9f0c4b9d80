#!/bin/sh
# Removes from a venv what its image never runs, in a build stage before the runtime stage copies
# it (images/*/Dockerfile). Usage:
#   slim-venv.sh <venv> [botocore service to keep]...
# - pip, setuptools, wheel and the activate scripts: the runtime installs nothing.
# - The packages' test suites (`tests` and `test` directories: numpy's, scipy's, scikit-learn's,
#   kubernetes's, pyarrow's...), Cython and C sources, headers and type stubs: read by builds and
#   type checkers, never imported.
# - The official Kubernetes client's asyncio twin, `kubernetes.aio` (68 MB with its byte code in
#   kubernetes 37): the operator calls the API through the synchronous client, and kopf looks for
#   kubernetes_asyncio, a package of its own. Nothing else in the package imports it.
# - botocore's service descriptions but the named ones (none named: botocore untouched). boto3
#   reads a service's JSON only when a client of it is created; Modelyard creates S3 clients,
#   and botocore's credential chain STS (web identity), SSO and sign-in clients.
# - Symbol tables of the packages' own extension modules (`strip --strip-unneeded`, when strip
#   is installed): what a debugger reads; the dynamic symbols the loader needs stay. Libraries
#   that auditwheel grafted into `<package>.libs` are left as they are: patchelf rewrote them,
#   and stripping such files has broken them before.
# The byte-compiled files pip wrote stay: the runtime's root filesystem is read-only.
set -eu
venv="$1"
shift
site="$(echo "${venv}"/lib/python3*/site-packages)"
[ -d "${site}" ] || { echo "slim-venv.sh: no site-packages in ${venv}" >&2; exit 1; }

rm -rf "${site}"/pip "${site}"/pip-*.dist-info "${site}"/setuptools "${site}"/setuptools-*.dist-info \
  "${site}"/pkg_resources "${site}"/_distutils_hack "${site}"/distutils-precedence.pth \
  "${site}"/wheel "${site}"/wheel-*.dist-info
rm -f "${venv}"/bin/pip "${venv}"/bin/pip3* "${venv}"/bin/wheel "${venv}"/bin/activate* "${venv}"/bin/Activate.ps1

rm -rf "${site}"/kubernetes/aio

find "${site}" -depth -type d \( -name tests -o -name test \) -exec rm -rf {} +
find "${site}" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.pyi' \
  -o -name '*.h' -o -name '*.hpp' -o -name '*.c' -o -name '*.cc' -o -name '*.cpp' \) -delete

if [ $# -gt 0 ] && [ -d "${site}/botocore/data" ]; then
  for service in "${site}"/botocore/data/*/; do
    name="$(basename "${service}")"
    keep=no
    for wanted in "$@"; do [ "${name}" = "${wanted}" ] && keep=yes; done
    [ "${keep}" = yes ] || rm -rf "${service}"
  done
fi

if command -v strip >/dev/null; then
  find "${site}" -type f \( -name '*.so' -o -name '*.so.*' \) ! -path '*.libs/*' -exec strip --strip-unneeded {} +
fi
