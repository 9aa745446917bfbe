"""Convert a PhysioMAE folder saved in the per-modality layout (one tokenizer, decoder, head or projection module per
modality, separate query / key / value projections) to the stacked layout the model has today.

    python -m physiomae.convert_per_modality_checkpoint OLD_FOLDER NEW_FOLDER

No released checkpoint has the old layout; this keeps folders written by early development versions usable.
`from_pretrained` does not convert: loading such a folder directly leaves the stacked weights untrained (transformers
lists them as missing). The conversion is checked: every weight of the new model is read from the old folder
(`convert_folder` refuses otherwise). Not part of the Hub copy of the model (`modeling_physiomae/`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from modeling_physiomae import modeling_physiomae
from modeling_physiomae.configuration_physiomae import PhysioMAEConfig
from modeling_physiomae.modeling_physiomae import (
    PhysioMAEGroupedLinear, PhysioMAEStackedLayerNorm, PhysioMAEStackedLinear,
)

# ----------------------------------------------------------------------------------------------
PER_MODALITY_KEY = re.compile(
    r"(^|\.)(embeddings\.tokenizers\.\d+\.|decoders\.\d+\.|decoder\.heads\.\d+\.|projections\.\d+\.|target_(mean|std|weight)_\d+$"
    r"|attention\.(query|key|value)\.(weight|bias)$|band_matrix$)"
)
"""State-dict keys of the per-modality layout (one module per modality and separate query / key / value
projections)."""


@torch.no_grad()
def load_per_modality_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """
    Load the entries of `state_dict` that are in the per-modality layout (`PER_MODALITY_KEY`: one tokenizer,
    decoder, head or projection module per modality, one target-statistics buffer per modality) into `model`'s
    stacked weights, in place; their padding is set to zero. Returns `{"loaded": legacy keys used, "filled":
    model keys written}`; entries in today's layout are left to the caller.
    """
    modules = dict(model.named_modules())

    def module(path: str) -> nn.Module:
        for candidate in (path, path.removeprefix(f"{model.base_model_prefix}."), f"{model.base_model_prefix}.{path}"):
            if candidate in modules:
                return modules[candidate], candidate
        return None, None  # e.g. a decoder weight read by the encoder alone: not needed

    def zero_padding_once(path: str, stacked: nn.Module) -> None:
        if path not in zeroed:
            zeroed.add(path)
            for name, tensor in stacked.named_parameters(recurse=False):
                tensor.zero_()
                filled.append(f"{path}.{name}")

    loaded, filled, zeroed, tokenizers, fused = [], [], set(), {}, {}
    target_index = getattr(model, "target_index", None)
    for key, value in state_dict.items():
        if not PER_MODALITY_KEY.search(key):
            continue
        if re.fullmatch(r"(.*\.)?band_matrix", key):  # saved by early versions; today derived from the config
            loaded.append(key)
        elif (match := re.fullmatch(r"(.*\.)?attention\.(query|key|value)\.(weight|bias)", key)) and "decoders." not in key:
            # a self-attention (encoder, in-place decoder): today one fused qkv projection, rows queries, keys, values
            fused.setdefault((match[1] or "", match[3]), {})[match[2]] = value
            loaded.append(key)
        elif match := re.fullmatch(r"(.*?)embeddings\.tokenizers\.(\d+)\.(\w+)\.(weight|bias)", key):
            tokenizers.setdefault((match[1], int(match[2])), {}).setdefault(match[3], {})[match[4]] = value
            loaded.append(key)
        elif match := re.fullmatch(r"(.*?)target_(mean|std|weight)_(\d+)", key):
            if not hasattr(model, f"target_{match[2]}"):
                continue
            loaded.append(key)
            buffer, modality = getattr(model, f"target_{match[2]}"), int(match[3])
            if f"target_{match[2]}" not in filled:
                buffer.fill_(1.0 if match[2] == "std" else 0.0)
                filled.append(f"target_{match[2]}")
            buffer[modality, target_index[modality]] = value.to(buffer.dtype)
        elif match := re.fullmatch(r"(.*?)decoders\.(\d+)\.(mask_token|time_position_embeddings)", key):
            stacked, path = module(f"{match[1]}decoder")
            if stacked is None:
                continue
            loaded.append(key)
            getattr(stacked, match[3])[int(match[2])] = value[0].to(getattr(stacked, match[3]).dtype)
            filled.append(f"{path}.{match[3]}")
        else:  # a Linear or LayerNorm of one modality's decoder, head or projection
            match = re.fullmatch(r"(.*?)(?:decoders\.(\d+)\.(.+)|decoder\.heads\.(\d+)|projections\.(\d+))\.(weight|bias)", key)
            if match is None:
                raise KeyError(f"{key!r}: not a per-modality weight PhysioMAE knows")
            column_offset = 0
            if match[2] is not None:
                modality, path_in_decoder = int(match[2]), match[3]
                if path_in_decoder.endswith((".key", ".value")):  # today one fused projection: keys, then values
                    attention, part = path_in_decoder.rsplit(".", 1)
                    path_in_decoder = f"{attention}.key_value"
                    column_offset = 0 if part == "key" else value.shape[0]
                stacked_path = f"{match[1]}decoder.{path_in_decoder}"
            elif match[4] is not None:
                modality, stacked_path = int(match[4]), f"{match[1]}decoder.heads"
            else:
                modality, stacked_path = int(match[5]), f"{match[1]}projections"
            stacked, path = module(stacked_path)
            if stacked is None:
                continue
            loaded.append(key)
            zero_padding_once(path, stacked)
            if isinstance(stacked, PhysioMAEStackedLayerNorm):
                getattr(stacked, match[6])[modality, 0] = value.to(stacked.weight.dtype)
                continue
            head = stacked_path.endswith(("decoder.prediction", "decoder.heads"))
            out_index = target_index[modality] if head else range(column_offset, column_offset + value.shape[0])
            stacked.load_group(modality, **{match[6]: value}, out_index=out_index)
    for (prefix, kind), parts in fused.items():
        attention, path = module(f"{prefix}attention")
        if attention is None:
            loaded = [key for key in loaded if not key.startswith(f"{prefix}attention.")]
            continue
        getattr(attention.qkv, kind).copy_(torch.cat([parts["query"], parts["key"], parts["value"]]))
        filled.append(f"{path}.qkv.{kind}")
    for (prefix, modality), parts in sorted(tokenizers.items()):
        tokenizer, path = module(f"{prefix}embeddings.tokenizer")
        if tokenizer is None:
            continue
        for name, part in tokenizer.named_children():
            if isinstance(part, (PhysioMAEStackedLinear, PhysioMAEGroupedLinear)):
                zero_padding_once(f"{path}.{name}", part)
        tokenizer.load_modality(modality, parts["convolution"], parts["projection"], parts.get("spectral_projection"))
    return {"loaded": loaded, "filled": filled}


def convert_folder(old: str | Path, new: str | Path) -> dict[str, list[str]]:
    """Write `new`: the model of `old` (its config's architecture) with the per-modality weights stacked, saved with
    `save_pretrained` (today's Hub folder), plus `old`'s preprocessor_config.json and README.md. ValueError, and
    nothing written, when a weight of the new model is not in `old` or a weight of `old` is left unused."""
    from safetensors.torch import load_file

    old, new = Path(old), Path(new)
    config = PhysioMAEConfig.from_pretrained(old)
    architecture = (config.architectures or ["PhysioMAEForPreTraining"])[0]
    model = getattr(modeling_physiomae, architecture)(config).eval()
    state_dict = load_file(old / "model.safetensors")
    try:
        result = load_per_modality_state_dict(model, state_dict)
    except (KeyError, RuntimeError, IndexError) as error:  # a module's weights incomplete or of another shape
        raise ValueError(f"{old}: not a per-modality PhysioMAE folder this converter knows ({type(error).__name__}: "
                         f"{error})") from error
    remaining = {key: value for key, value in state_dict.items() if not PER_MODALITY_KEY.search(key)}
    missing, unexpected = model.load_state_dict(remaining, strict=False)
    unfilled = sorted(set(missing) - set(result["filled"]) - {name for name, _ in model.named_buffers()})
    unused = sorted(set(unexpected) | (set(state_dict) - set(remaining) - set(result["loaded"])))
    if unfilled or unused:
        raise ValueError(f"{old}: not a per-modality PhysioMAE folder this converter knows: weights not found "
                         f"{unfilled[:5]}, weights not used {unused[:5]}")
    model.save_pretrained(new)
    for name in ("preprocessor_config.json", "README.md"):
        if (old / name).is_file():
            shutil.copy2(old / name, new / name)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="folder in the per-modality layout")
    parser.add_argument("new", help="folder to write in the stacked layout")
    arguments = parser.parse_args(argv)
    result = convert_folder(arguments.old, arguments.new)
    print(json.dumps({"converted_tensors": len(result["loaded"]), "written": arguments.new}))


if __name__ == "__main__":
    sys.exit(main())
