"""Small safetensors reader/writer for numpy (tools and tests only; the engine has its own C loader).

Owns: the file format (8-byte LE header length, JSON header, raw LE data), the dtypes met in
GLM/DeepSeek checkpoints (BF16, F16, F32, F64, U8, I8, U16, I16, U32, I32, I64, U64, BOOL,
F8_E4M3), bf16/e4m3 rounding, and sharded directories with `model.safetensors.index.json`.

Reading returns bf16 as float32 (exact upcast) and F8_E4M3 as float32 (exact decode); every other
dtype comes back as its own numpy dtype (U8/U32 stay raw unsigned ints, since quantized checkpoints
store packed bits there). `SafeTensors.raw(name)` gives the untouched bits of any tensor.

Writing is streamed: the header is built from (name, dtype, shape) specs and each tensor's data is
asked for only when it is written, so checkpoints larger than memory can be produced.
"""
import json
import mmap
import os

import numpy as np

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

# safetensors dtype -> (numpy storage dtype, bytes per element)
_STORAGE = {
    "BF16": np.dtype("<u2"), "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
    "U8": np.dtype("u1"), "I8": np.dtype("i1"), "U16": np.dtype("<u2"), "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "U64": np.dtype("<u8"), "I64": np.dtype("<i8"),
    "BOOL": np.dtype("u1"), "F8_E4M3": np.dtype("u1"),
}
DTYPES = tuple(_STORAGE)


class SafetensorsError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# bf16 / e4m3 conversions

def bf16_bits(x):
    """float -> bf16 bit patterns (uint16), round to nearest, ties to even; NaN stays NaN."""
    f = np.ascontiguousarray(x, dtype=np.float32)
    u = f.view(np.uint32)
    # Adding 0x7FFF plus the lsb of the kept half rounds to nearest-even in one integer add;
    # it also carries correctly into the exponent (and up to inf for values past bf16 max).
    r = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():
        r[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)  # keep sign, quiet NaN
    return r


def bf16_to_f32(bits):
    """bf16 bit patterns (uint16) -> float32, exact."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def round_bf16(x):
    """float -> nearest bf16 value, returned as float32."""
    return bf16_to_f32(bf16_bits(x))


def _e4m3_table():
    codes = np.arange(256, dtype=np.uint32)
    s = (codes >> 7) & 1
    e = (codes >> 3) & 15
    m = codes & 7
    mag = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e.astype(np.float64) - 7))
    val = np.where(s == 1, -mag, mag)
    val[(e == 15) & (m == 7)] = np.nan  # FN variant: no inf, only NaN
    return val.astype(np.float32)


E4M3_VALUES = _e4m3_table()


def e4m3_to_f32(bits):
    return E4M3_VALUES[np.asarray(bits, dtype=np.uint8)]


def e4m3_bits(x):
    """float -> FP8 E4M3 (FN) codes: nearest, ties to even code, saturating at +-448, NaN -> 0x7F."""
    x = np.asarray(x, dtype=np.float32)
    pos = E4M3_VALUES[:127]  # codes 0..126: all finite non-negative values, increasing
    a = np.minimum(np.abs(x), 448.0)
    hi = np.clip(np.searchsorted(pos, a, side="left"), 0, 126)
    lo = np.maximum(hi - 1, 0)
    dlo = a - pos[lo]
    dhi = pos[hi] - a
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    code = np.where(pick_hi, hi, lo).astype(np.uint8)
    code = np.where(np.signbit(x) & (code != 0), code | np.uint8(0x80), code).astype(np.uint8)
    code[np.isnan(x)] = 0x7F
    return code


def encode(arr, dtype):
    """numpy array -> storage array for safetensors dtype `dtype` (rounding floats as needed)."""
    if dtype == "BF16":
        a = np.asarray(arr)
        return a.astype(np.uint16) if a.dtype == np.uint16 else bf16_bits(a)
    if dtype == "F8_E4M3":
        a = np.asarray(arr)
        return a if a.dtype == np.uint8 else e4m3_bits(a)
    if dtype not in _STORAGE:
        raise SafetensorsError(f"unsupported dtype {dtype!r}")
    return np.asarray(arr).astype(_STORAGE[dtype])


def decode(storage, dtype):
    if dtype == "BF16":
        return bf16_to_f32(storage)
    if dtype == "F8_E4M3":
        return e4m3_to_f32(storage)
    if dtype == "BOOL":
        return storage.astype(bool)
    return storage


# ---------------------------------------------------------------------------------------------
# reading

def read_header(path):
    """-> (header dict without __metadata__, metadata dict, absolute offset of the data area)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path}: shorter than 8 bytes")
        n = int.from_bytes(raw, "little")
        size = os.fstat(f.fileno()).st_size
        if n > size - 8 or n > 100 << 20:
            raise SafetensorsError(f"{path}: header length {n} exceeds the file")
        hdr = json.loads(f.read(n).decode("utf-8"))
    if not isinstance(hdr, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    meta = hdr.pop("__metadata__", {}) or {}
    data_len = size - 8 - n
    for name, t in hdr.items():
        dt, shape, offs = t.get("dtype"), t.get("shape"), t.get("data_offsets")
        if dt not in _STORAGE:
            raise SafetensorsError(f"{path}: tensor {name}: unsupported dtype {dt!r}")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if (not isinstance(offs, list) or len(offs) != 2 or not 0 <= offs[0] <= offs[1] <= data_len
                or offs[1] - offs[0] != count * _STORAGE[dt].itemsize):
            raise SafetensorsError(f"{path}: tensor {name}: bad data_offsets {offs} for {dt}{shape}")
    return hdr, meta, 8 + n


class SafeTensors:
    """One safetensors file, or a model directory (single file or shards + index), read lazily."""

    def __init__(self, path):
        self._files = {}   # file path -> (header, data offset, mmap)
        self._where = {}   # tensor name -> file path
        if os.path.isdir(path):
            idx = os.path.join(path, INDEX_NAME)
            if os.path.exists(idx):
                with open(idx) as f:
                    wm = json.load(f).get("weight_map")
                if not isinstance(wm, dict):
                    raise SafetensorsError(f"{idx}: no weight_map object")
                for shard in sorted(set(wm.values())):
                    self._open(os.path.join(path, shard))
                for name, shard in wm.items():
                    fp = os.path.join(path, shard)
                    if name not in self._files[fp][0]:
                        raise SafetensorsError(f"{idx}: {name} mapped to {shard}, which lacks it")
                    self._where[name] = fp
            else:
                files = sorted(p for p in os.listdir(path) if p.endswith(".safetensors"))
                if not files:
                    raise SafetensorsError(f"{path}: no *.safetensors files")
                for p in files:
                    self._open(os.path.join(path, p))
        else:
            self._open(path)
        if not self._where:
            for fp, (hdr, _, _) in self._files.items():
                for name in hdr:
                    if name in self._where:
                        raise SafetensorsError(f"tensor {name} appears in two files")
                    self._where[name] = fp

    def _open(self, fp):
        hdr, meta, off = read_header(fp)
        with open(fp, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.path.getsize(fp) else None
        self._files[fp] = (hdr, off, mm)
        self.metadata = meta

    def names(self):
        return sorted(self._where)

    def __contains__(self, name):
        return name in self._where

    def info(self, name):
        """-> (dtype string, shape tuple)."""
        t = self._entry(name)
        return t["dtype"], tuple(t["shape"])

    def _entry(self, name):
        if name not in self._where:
            raise KeyError(f"tensor {name!r} not found")
        return self._files[self._where[name]][0][name]

    def raw(self, name):
        """Stored bits as a (read-only) numpy array of the storage dtype."""
        t = self._entry(name)
        hdr, off, mm = self._files[self._where[name]]
        st = _STORAGE[t["dtype"]]
        a, b = t["data_offsets"]
        arr = np.frombuffer(mm, dtype=st, count=(b - a) // st.itemsize, offset=off + a) if b > a \
            else np.zeros(0, dtype=st)
        return arr.reshape(t["shape"])

    def get(self, name):
        """Tensor values: bf16/e4m3 decoded to float32, all else as stored."""
        return decode(self.raw(name), self._entry(name)["dtype"]).copy()

    def close(self):
        for _, _, mm in self._files.values():
            if mm is not None:
                mm.close()
        self._files.clear()


def load(path):
    """Whole file or directory into a dict name -> array."""
    st = SafeTensors(path)
    try:
        return {n: st.get(n) for n in st.names()}
    finally:
        st.close()


# ---------------------------------------------------------------------------------------------
# writing

def _nbytes(dtype, shape):
    return int(np.prod(shape, dtype=np.int64)) * _STORAGE[dtype].itemsize


def write_file(path, specs, produce, metadata=None):
    """Write one safetensors file.

    specs: iterable of (name, dtype, shape); written in sorted-name order.
    produce(name) -> array of that shape, or an iterator of chunks whose C-order concatenation is
    the tensor; converted/rounded to dtype here (uint16 input to BF16 / uint8 input to F8_E4M3 is
    taken as ready-made bits).
    Returns total data bytes.
    """
    specs = sorted((n, d, tuple(int(x) for x in s)) for n, d, s in specs)
    names = [n for n, _, _ in specs]
    if len(set(names)) != len(names):
        raise SafetensorsError("duplicate tensor names")
    hdr = {"__metadata__": dict(metadata or {"format": "pt"})}
    off = 0
    for n, d, s in specs:
        if d not in _STORAGE:
            raise SafetensorsError(f"{n}: unsupported dtype {d!r}")
        nb = _nbytes(d, s)
        hdr[n] = {"dtype": d, "shape": list(s), "data_offsets": [off, off + nb]}
        off += nb
    hb = json.dumps(hdr, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)  # data area 8-byte aligned, padded with spaces as the Rust writer does
    with open(path, "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for n, d, s in specs:
            got = produce(n)
            if isinstance(got, np.ndarray) or not hasattr(got, "__next__"):
                arr = np.asarray(got)
                if tuple(arr.shape) != s:
                    raise SafetensorsError(f"{n}: produced shape {arr.shape}, declared {s}")
                f.write(np.ascontiguousarray(encode(arr, d)).tobytes())
            else:
                # an iterator of chunks (flattened in C order) for tensors too big to hold at once
                count = 0
                for chunk in got:
                    chunk = np.ascontiguousarray(encode(chunk, d))
                    count += chunk.size
                    f.write(chunk.tobytes())
                if count != int(np.prod(s, dtype=np.int64)):
                    raise SafetensorsError(f"{n}: produced {count} elements, declared {s}")
    return off


def write_tensors(path, tensors, dtypes=None, metadata=None):
    """Convenience: dict name -> array (dtype from `dtypes[name]`, else inferred) into one file."""
    def infer(a):
        return {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.float16): "F16",
                np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8", np.dtype(np.uint16): "U16",
                np.dtype(np.int16): "I16", np.dtype(np.uint32): "U32", np.dtype(np.int32): "I32",
                np.dtype(np.uint64): "U64", np.dtype(np.int64): "I64", np.dtype(bool): "BOOL"}[a.dtype]
    dtypes = dtypes or {}
    specs = [(n, dtypes.get(n) or infer(np.asarray(a)), np.shape(a)) for n, a in tensors.items()]
    return write_file(path, specs, lambda n: tensors[n], metadata)


def shard_name(i, n):
    return f"model-{i + 1:05d}-of-{n:05d}.safetensors"


def write_model(dirpath, specs, produce, n_shards=1, metadata=None):
    """Write `model.safetensors` (n_shards == 1) or n_shards shards + index.json into dirpath.

    Tensors are taken in sorted-name order and cut into n_shards runs of about equal bytes.
    """
    specs = sorted((n, d, tuple(s)) for n, d, s in specs)
    if n_shards <= 1:
        write_file(os.path.join(dirpath, SINGLE_NAME), specs, produce, metadata)
        return [SINGLE_NAME]
    n_shards = min(n_shards, len(specs))
    sizes = [_nbytes(d, s) for _, d, s in specs]
    total = sum(sizes)
    groups = [[] for _ in range(n_shards)]
    acc = 0
    for spec, nb in zip(specs, sizes):
        # shard k takes tensors whose byte midpoint falls in its 1/n of the total
        k = min(n_shards - 1, int((acc + nb / 2) * n_shards // max(total, 1)))
        groups[k].append(spec)
        acc += nb
    # never leave a shard empty: borrow from a neighbour that has more than one tensor
    for k in range(n_shards):
        if not groups[k]:
            donor = max(range(n_shards), key=lambda j: len(groups[j]))
            if donor < k:
                groups[k].insert(0, groups[donor].pop())
            else:
                groups[k].append(groups[donor].pop(0))
    groups = [sorted(g) for g in groups]
    weight_map = {}
    files = []
    for k, g in enumerate(groups):
        fn = shard_name(k, n_shards)
        write_file(os.path.join(dirpath, fn), g, produce, metadata)
        files.append(fn)
        for n, _, _ in g:
            weight_map[n] = fn
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(dirpath, INDEX_NAME), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    return files
