#!/usr/bin/env bash
# Create one virtual environment per peer of the benchmark, beside the repository's .venv:
#
#   bash tests/bench/peers/setup.sh [smartnoise] [mostlyai]     (default: both)
#
# .venv-peers-smartnoise  smartnoise-synth (DP-CTGAN, PATE-CTGAN, MST, AIM; pulls mbi and an old
#                         opacus of its own, hence its own environment)
# .venv-peers-mostlyai    mostlyai-engine (TabularARGN, flat and sequential, DP-SGD via opacus)
#
# torch is installed first, pinned to 2.13.0 as a CPU build (a local wheel, else the PyTorch CPU
# index): any other torch pin would pull multi-gigabyte CUDA builds. Each peer accepts that
# torch (mostlyai-engine asks for >=2.13,<2.14; smartnoise-synth leaves it open), and the script
# fails if a CUDA torch came in anyway.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PYTHON=${PYTHON:-python3.11}
TORCH=${TORCH:-torch==2.13.0}
CPU_INDEX=${CPU_INDEX-https://download.pytorch.org/whl/cpu}
peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(smartnoise mostlyai)

make_venv() {
    local dir=$1
    shift
    [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
    "$dir/bin/pip" install -q --upgrade pip
    # PyPI's Linux torch wheels are CUDA builds; the CPU build (2.13.0+cpu, from the CPU index
    # or a local wheel that pip's find-links knows) sorts above them, so pip takes it.
    # CPU_INDEX= (empty) skips the index on machines that cannot reach it.
    "$dir/bin/pip" install -q "$TORCH" ${CPU_INDEX:+--extra-index-url "$CPU_INDEX"}
    "$dir/bin/pip" install -q "$@"
    "$dir/bin/python" -c "import torch; assert not torch.version.cuda, 'CUDA torch pulled in'; print('$dir: torch', torch.__version__)"
}

for peer in "${peers[@]}"; do
    case $peer in
        # smartnoise-synth imports packaging without declaring it.
        smartnoise) make_venv .venv-peers-smartnoise "smartnoise-synth==1.0.8" packaging ;;
        mostlyai)
            make_venv .venv-peers-mostlyai "mostlyai-engine==2.7.3"
            # torchvision and torchaudio come as PyPI wheels built for CUDA torch: under the CPU
            # torch their operators fail to register ("torchvision::nms does not exist") and
            # transformers' import fails with them. The tabular engine uses neither.
            .venv-peers-mostlyai/bin/pip uninstall -y -q torchvision torchaudio
            ;;
        *) echo "unknown peer $peer (smartnoise, mostlyai)" >&2; exit 2 ;;
    esac
done
