#!/usr/bin/env bash
# Installs everything Bedside needs on a fresh Debian/Ubuntu machine and builds the release binary.
# Safe to re-run: each step is skipped when already done.
#   system packages (apt-get): DICOM validators and peers
#   Python reference tools:    .venv (pydicom, numpy, … from tools/python/requirements.txt)
#   Rust:                      cargo build --release
set -euo pipefail
cd "$(dirname "$0")/.."

# dicom3tools, dcmtk: DICOM validators and peers; libgdcm-tools + openssl: gdcmanon, the peer of
# `bedside bench curate`; tesseract + libtesseract-dev, libleptonica-dev, clang (bindgen),
# pkg-config: OCR of burned-in text; chromium: report rendering tests and the annotate
# interface's browser tests (with OHIF); orthanc + orthanc-dicomweb: a real PACS for the serve
# tests and the DICOMweb peer of the annotate frames benchmark; postgresql: the annotation
# server's shared database, started for the tests by scripts/postgres.sh.
APT_PACKAGES=(dicom3tools dcmtk libgdcm-tools openssl python3-venv tesseract-ocr tesseract-ocr-eng
  libtesseract-dev libleptonica-dev clang libclang-dev pkg-config chromium orthanc orthanc-dicomweb
  postgresql)

need_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
# Node (npm): the annotate interface's browser tests (Playwright) and scripts/build-web.sh; the
# built interface is committed, so cargo builds need no Node. Any existing install is kept.
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "==> installing system packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating Python virtual environment .venv"
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum tools/python/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing Python reference tools"
  .venv/bin/pip install -q --disable-pip-version-check -r tools/python/requirements.txt
  echo "$want" > "$stamp"
fi

# web/annotate's npm dependencies (Playwright for the browser tests), from its lockfile.
stamp=web/annotate/node_modules/.package-lock.sha256
want=$(sha256sum web/annotate/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing web/annotate's npm packages"
  (cd web/annotate && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi

if [ "${BEDSIDE_SKIP_BUILD:-0}" != "1" ]; then
  echo "==> building bedside (release)"
  cargo build --release --locked -p bedside-cli
fi
