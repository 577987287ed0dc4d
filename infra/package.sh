#!/usr/bin/env bash
# Packages both functions for Lambda with cargo-lambda, the tool `sam build` runs for
# BuildMethod rust-cargolambda: target/lambda/<binary>/bootstrap.zip, checked to hold an ELF
# `bootstrap` for the requested architecture.
#
#   bash infra/package.sh                      # release profile, x86_64
#   DIALS_CARGO_PROFILE=ci bash infra/package.sh
#   DIALS_LAMBDA_ARCH=arm64 bash infra/package.sh   # needs Rust's aarch64-unknown-linux-gnu std
#
# The template deploys x86_64, which is what CI packages here. arm64 needs Rust's aarch64 std, which
# cannot be installed on these machines (one toolchain, no rustup downloads): untested here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
profile="${DIALS_CARGO_PROFILE:-release}"
arch="${DIALS_LAMBDA_ARCH:-x86_64}"
case "$arch" in
  x86_64) flag=--x86-64; machine=62 ;;
  arm64) flag=--arm64; machine=183 ;;
  *) echo "DIALS_LAMBDA_ARCH must be x86_64 or arm64"; exit 2 ;;
esac
# What is packaged and checked here must be what the template deploys: a template that names another
# architecture than the one built would deploy binaries nobody built or tested.
deployed=$(sed -n 's/^ *Architectures: *\[ *\([a-z0-9_]*\) *\].*/\1/p' sam-template.yaml | sort -u)
if [[ "$deployed" != "$arch" ]]; then
  echo "sam-template.yaml deploys '${deployed}' but this packages and checks '${arch}'"; exit 1
fi
cargo lambda build --profile "$profile" "$flag" --compiler cargo --output-format zip \
  -p dials-ingest-function -p dials-query-function
for bin in dials-ingest dials-query; do
  python3 - "target/lambda/$bin/bootstrap.zip" "$machine" <<'PY'
import struct, sys, zipfile
path, machine = sys.argv[1], int(sys.argv[2])
with zipfile.ZipFile(path) as z:
    info = z.getinfo("bootstrap")
    head = z.open("bootstrap").read(20)
assert head[:4] == b"\x7fELF", f"{path}: bootstrap is not an ELF file"
got = struct.unpack_from("<H", head, 18)[0]
assert got == machine, f"{path}: ELF machine {got}, expected {machine}"
assert info.external_attr >> 16 & 0o111, f"{path}: bootstrap is not executable"
print(f"{path}: bootstrap {info.file_size / 1e6:.1f} MB, zip {info.compress_size / 1e6:.1f} MB, ELF machine {got}")
PY
done
