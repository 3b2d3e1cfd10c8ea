#!/usr/bin/env python3
"""Writes the checkpoint compatibility matrix: small files saved the ways real code saves them,
and what PyTorch itself reads back from each, for tests/checkpoint_matrix.rs.

    python3 -m pip install torch numpy        # once; CI does not need it (the output is committed)
    python3 tools/checkpoints/make_matrix.py  # rewrites tests/data/checkpoints/

Every expectation comes from `torch.load` of the file as written (weights_only=True where torch
can; `torch_weights_only: false` marks the files it cannot read so: an argparse Namespace or numpy
RNG state, a pickled module, pickle protocols 4 and 5; only this script unpickles them, percept
never runs their code), then the selection rule of
CONVENTIONS.md "Checkpoints": the first of `ema`, `model`, `state_dict` present, else the top
level; nested dicts give dotted names; a `module.` prefix on every key (DDP, DataParallel) is
dropped. Tensor values are recorded as the hex of their contiguous little-endian bytes, so the
test compares bit for bit. A case whose expectation is `refused` must fail with a message naming
the file and the given words.
"""

import argparse
import io
import json
import os
import pickle
import random
import shutil
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import torch
import torch.utils.serialization

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "checkpoints")
STATE_DICT_KEYS = ("ema", "model", "state_dict")
DTYPES = {
    torch.float32: "f32",
    torch.float16: "f16",
    torch.bfloat16: "bf16",
    torch.float64: "f64",
    torch.int64: "i64",
    torch.int32: "i32",
    torch.int16: "i16",
    torch.int8: "i8",
    torch.uint8: "u8",
    torch.bool: "bool",
}


class TinyNet(torch.nn.Module):
    """Linear, conv and batch-norm layers: weights, biases and int64 buffers, as real models have."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3)
        self.norm = torch.nn.BatchNorm2d(3)
        self.head = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.GELU(), torch.nn.Linear(3, 2))

    def forward(self, x):
        return self.head(self.norm(self.conv(x)).mean((2, 3)).repeat(1, 2)[:, :4])


def tiny_net(seed):
    torch.manual_seed(seed)
    net = TinyNet()
    # Non-trivial running statistics and a counter, as after training.
    net.norm.running_mean.uniform_(-1, 1)
    net.norm.running_var.uniform_(0.5, 2)
    net.norm.num_batches_tracked.fill_(17)
    return net


def values(n, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, generator=g, dtype=torch.float64) * 4 - 2).to(dtype)


def select(obj):
    """CONVENTIONS.md's rule, on what torch.load returned."""
    key = None
    if isinstance(obj, dict):
        for k in STATE_DICT_KEYS:
            if obj.get(k) is not None:
                obj, key = obj[k], k
                break
    found = []

    def walk(d, prefix):
        for k, v in d.items():
            name = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, torch.Tensor):
                found.append((name, v))
            elif isinstance(v, dict):
                walk(v, name)

    walk(obj, "")
    if found and all(n.startswith("module.") for n, _ in found):
        found = [(n[len("module.") :], t) for n, t in found]
    return key, found


def tensor_record(name, t):
    t = t.detach().contiguous()
    raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
    data = raw.numpy().tobytes()
    return {"name": name, "dtype": DTYPES[t.dtype], "shape": list(t.shape), "hex": data.hex()}


CASES = []


def case(file, note, refused=None, config=None):
    """Registers a case: `make(path)` writes the file; the expectation is read back by torch."""

    def register(make):
        CASES.append(dict(file=file, note=note, refused=refused, config=config, make=make))
        return make

    return register


# Pickle protocols 2-5 (torch.save's pickle_protocol; 2 is its default).
for proto in (2, 3, 4, 5):

    @case(f"protocol{proto}.pt", f"TinyNet state dict, pickle protocol {proto}")
    def _(path, proto=proto):
        torch.save(tiny_net(proto).state_dict(), path, pickle_protocol=proto)


for dtype, tag in ((torch.float16, "f16"), (torch.bfloat16, "bf16"), (torch.float32, "f32"), (torch.float64, "f64")):

    @case(f"dtype_{tag}.pt", f"a state dict of {tag} tensors (module.to(dtype))")
    def _(path, dtype=dtype):
        torch.save(tiny_net(3).to(dtype).state_dict(), path)


@case("dtype_mixed.pt", "f16, bf16, f32, f64, int64, int32, int16, int8, uint8 and bool side by side")
def _(path):
    sd = OrderedDict()
    for i, dt in enumerate(DTYPES):
        if dt.is_floating_point:
            sd[f"w_{DTYPES[dt]}"] = values(6, 10 + i, dt).reshape(2, 3)
    sd["steps_i64"] = torch.tensor([1, -2, 3 << 40], dtype=torch.int64)
    sd["ids_i32"] = torch.tensor([[7, -8], [9, 2**31 - 1]], dtype=torch.int32)
    sd["short_i16"] = torch.tensor([-32768, 5, 32767], dtype=torch.int16)
    sd["char_i8"] = torch.tensor([-128, -1, 0, 127], dtype=torch.int8)
    sd["bytes_u8"] = torch.tensor([0, 1, 254, 255], dtype=torch.uint8)
    sd["mask_bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(3.25)
    sd["empty"] = torch.zeros(0, 4)
    torch.save(sd, path)


@case("module_state_dict.pt", "nn.Module.state_dict(): an OrderedDict carrying _metadata, int64 buffers")
def _(path):
    sd = tiny_net(4).state_dict()
    assert hasattr(sd, "_metadata")
    torch.save(sd, path)


@case("parameters.pt", "nn.Parameter objects (with and without requires_grad), not plain tensors")
def _(path):
    net = tiny_net(5)
    torch.save(
        {
            "conv.weight": net.conv.weight,
            "frozen": torch.nn.Parameter(values(4, 6), requires_grad=False),
            "plain": values(3, 7),
        },
        path,
    )


def training_checkpoint(net, opt_steps=2):
    """model/ema/opt with real Adam state, argparse arguments, RNG states, numbers."""
    ema = tiny_net(99)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    for _ in range(opt_steps):
        opt.zero_grad()
        net(torch.randn(2, 2, 5, 5)).square().mean().backward()
        opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, 3)
    args = argparse.Namespace(lr=1e-3, model="DiT-XL/2", epochs=10, data_path="/data", flags=[1, 2])
    return {
        "model": net.state_dict(),
        "ema": ema.state_dict(),
        "opt": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "args": args,
        "epoch": 7,
        "global_step": 12345,
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
        "best_loss": 0.125,
    }


@case(
    "training_ema.pt",
    "training checkpoint: model, ema, AdamW state, scheduler, argparse args, torch/numpy/python RNG states",
)
def _(path):
    torch.save(training_checkpoint(tiny_net(6)), path)


@case("training_model_only.pt", "training checkpoint without ema: model is taken (optimizer state beside it)")
def _(path):
    ck = training_checkpoint(tiny_net(7))
    for k in ("ema", "args", "numpy_rng", "python_rng"):
        del ck[k]
    torch.save(ck, path)


@case("training_ema_none.pt", "ema saved as None (EMA disabled): model is taken")
def _(path):
    ck = training_checkpoint(tiny_net(8))
    ck["ema"] = None
    for k in ("args", "numpy_rng", "python_rng"):
        del ck[k]
    torch.save(ck, path)


@case("lightning.ckpt", "PyTorch Lightning layout: state_dict with model. keys, optimizer_states, hyper_parameters")
def _(path):
    net = tiny_net(9)
    ck = training_checkpoint(net)
    torch.save(
        {
            "epoch": 3,
            "global_step": 300,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": OrderedDict((f"model.{k}", v) for k, v in net.state_dict().items()),
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 4}}}},
            "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.5)}},
            "optimizer_states": [ck["opt"]],
            "lr_schedulers": [ck["scheduler"]],
            "hparams_name": "kwargs",
            "hyper_parameters": {"lr": 1e-3, "hidden": 4},
        },
        path,
    )


@case("shared_storage.pt", "views into one flat storage at offsets (flattened parameters), and a tied weight")
def _(path):
    flat = values(40, 11)
    w = flat[0:12].view(3, 4)
    torch.save(
        OrderedDict(
            [
                ("a.weight", w),
                ("a.bias", flat[12:15]),
                ("b.weight", flat[16:32].view(2, 2, 4)),
                ("b.bias", flat[33:35]),
                ("tied.weight", w),
                ("tail", flat[35:]),
            ]
        ),
        path,
    )


@case("strided.pt", "column-major (transposed), channels_last, sliced with a step, and expanded (stride 0) tensors")
def _(path):
    m = values(12, 12).reshape(3, 4)
    conv = values(3 * 2 * 2 * 2, 13).reshape(3, 2, 2, 2)
    torch.save(
        {
            "transposed": m.t(),
            "column_major": torch.empty_strided((3, 4), (1, 3)).copy_(m),
            "channels_last": conv.contiguous(memory_format=torch.channels_last),
            "stepped": values(10, 14)[::3],
            "expanded": values(3, 15).expand(4, 3),
            "expanded_scalar": torch.tensor(1.5).expand(2, 2),
            "broadcast_middle": values(2, 16).reshape(2, 1, 1).expand(2, 3, 2),
        },
        path,
    )


@case("no_crc32.pt", "saved with torch.utils.serialization.config.save.compute_crc32 = False", config={"compute_crc32": False})
def _(path):
    torch.save(tiny_net(10).state_dict(), path)


@case(
    "page_aligned.pt",
    "storages aligned to 4096 bytes (config.save.storage_alignment = 4096, as for mmap loading)",
    config={"storage_alignment": 4096},
)
def _(path):
    torch.save(tiny_net(11).state_dict(), path)


@case("weights.pth", "the .pth extension")
def _(path):
    torch.save(tiny_net(12).state_dict(), path)


@case("pytorch_model.bin", "the .bin name transformers and diffusers use")
def _(path):
    torch.save(tiny_net(13).state_dict(), path)


@case("buffer_saved.pt", "saved to a file object (BytesIO): entries under archive/ whatever the file name")
def _(path):
    b = io.BytesIO()
    torch.save(tiny_net(14).state_dict(), b)
    with open(path, "wb") as f:
        f.write(b.getvalue())


@case("dotted.name.v2.pt", "a file name with dots: entries under dotted.name.v2/")
def _(path):
    torch.save(tiny_net(15).state_dict(), path)


@case(
    "old_layout.pt",
    "the layout of PyTorch 1.6-1.x: archive/ with data.pkl, data/N and version only (no byteorder, "
    ".format_version or serialization id), entries unaligned as Python's zipfile writes them",
)
def _(path):
    b = io.BytesIO()
    torch.save(tiny_net(16).state_dict(), b)
    src = zipfile.ZipFile(io.BytesIO(b.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            rest = name.split("/", 1)[1]
            if rest == "data.pkl" or rest == "version" or rest.startswith("data/"):
                dst.writestr("archive/" + rest, src.read(name))


@case("old_prefix.pt", "an archive folder named after another file (renamed after saving)")
def _(path):
    tmp = os.path.join(os.path.dirname(path), "model_epoch_12.pt")
    torch.save(tiny_net(17).state_dict(), tmp)
    os.replace(tmp, path)


@case("ddp.pt", "DistributedDataParallel/DataParallel state dict: module. on every key (stripped)")
def _(path):
    torch.save(torch.nn.DataParallel(tiny_net(18)).state_dict(), path)


@case("ddp_training.pt", "a training checkpoint whose model is a DataParallel state dict")
def _(path):
    torch.save({"model": torch.nn.DataParallel(tiny_net(19)).state_dict(), "epoch": 1}, path)


@case("nested.pt", "nested dicts of tensors give dotted names")
def _(path):
    torch.save({"encoder": {"w": values(4, 20), "inner": {"b": values(2, 21)}}, "head": values(3, 22)}, path)


@case(
    "uint16.pt",
    "a uint16 tensor (torch saves it with _rebuild_tensor_v3): refused, naming the dtype",
    refused=["torch.uint16", "\"counts\""],
)
def _(path):
    torch.save({"w": values(4, 25), "counts": torch.arange(5).to(torch.uint16)}, path)


@case(
    "whole_module.pt",
    "a whole pickled nn.Module (torch.save(model)): refused, naming its class",
    refused=["TinyNet", "state_dict"],
)
def _(path):
    torch.save(tiny_net(23), path)


@case(
    "module_under_model.pt",
    "a whole nn.Module under model: refused, naming its class",
    refused=["TinyNet", "model"],
)
def _(path):
    torch.save({"model": tiny_net(24), "epoch": 2}, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    cfg = torch.utils.serialization.config.save
    manifest = {
        "generated_by": "tools/checkpoints/make_matrix.py",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cases": [],
    }
    total = 0
    for c in CASES:
        path = os.path.join(out, c["file"])
        saved = {k: getattr(cfg, k) for k in (c["config"] or {})}
        for k, v in (c["config"] or {}).items():
            setattr(cfg, k, v)
        try:
            c["make"](path)
        finally:
            for k, v in saved.items():
                setattr(cfg, k, v)
        # weights_only=True where torch can; it cannot for an argparse Namespace, numpy RNG
        # state, a pickled module, or even (torch 2.x) pickle protocol 4/5's FRAME opcode.
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            weights_only = True
        except pickle.UnpicklingError:
            loaded = torch.load(path, map_location="cpu", weights_only=False)
            weights_only = False
        entry = {"file": c["file"], "note": c["note"], "torch_weights_only": weights_only}
        if c["refused"] is not None:
            entry["refused"] = c["refused"]
        else:
            key, found = select(loaded)
            entry["source_key"] = key
            entry["tensors"] = [tensor_record(n, t) for n, t in found]
        manifest["cases"].append(entry)
        size = os.path.getsize(path)
        total += size
        print(f"{c['file']:28} {size:7} bytes  {c['note']}")
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"{len(CASES)} files, {total} bytes, in {out}")


if __name__ == "__main__":
    sys.exit(main())
