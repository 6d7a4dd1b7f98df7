#!/usr/bin/env python3
# From ../shared/gpu-probe (the project's GPU probe), unchanged apart from this line.
"""Pure-Python (no binutils) check: which undefined dynamic symbols of LIB are not defined
by any of the PROVIDER libraries. Usage: elfsyms.py LIB PROVIDER.so [PROVIDER.so ...]
Prints counts and the missing symbols (mangled; demangled too if c++filt exists).
Ignores versioned symbols (glibc/libstdc++) and weak undefined ones."""
import mmap, shutil, struct, subprocess, sys

SHT_DYNSYM = 11
STB_WEAK = 2
SHN_UNDEF = 0

def dynsyms(path):
    """Yield (name, defined, bind, versioned) for each .dynsym entry."""
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        assert m[:4] == b"\x7fELF" and m[4] == 2, f"{path}: not ELF64"
        e_shoff, = struct.unpack_from("<Q", m, 0x28)
        e_shentsize, e_shnum = struct.unpack_from("<HH", m, 0x3A)
        secs = [struct.unpack_from("<IIQQQQIIQQ", m, e_shoff + i * e_shentsize) for i in range(e_shnum)]
        versym = None
        for s in secs:
            if s[1] == 0x6FFFFFFF:  # SHT_GNU_versym
                versym = (s[4], s[5])
        out = []
        for s in secs:
            if s[1] != SHT_DYNSYM:
                continue
            off, size, link, entsize = s[4], s[5], s[6], s[9] or 24
            stroff = secs[link][4]
            for i in range(size // entsize):
                st_name, st_info, st_other, st_shndx, st_value, st_size = struct.unpack_from("<IBBHQQ", m, off + i * entsize)
                if st_name == 0:
                    continue
                end = m.find(b"\0", stroff + st_name)
                name = m[stroff + st_name:end].decode("ascii", "replace")
                ver = 0
                if versym is not None:
                    ver, = struct.unpack_from("<H", m, versym[0] + 2 * i)
                    ver &= 0x7FFF
                out.append((name, st_shndx != SHN_UNDEF, st_info >> 4, ver > 1))
        return out
    finally:
        m.close()

def main():
    lib, providers = sys.argv[1], sys.argv[2:]
    need = {n for (n, d, b, v) in dynsyms(lib) if not d and not v and b != STB_WEAK}
    have = set()
    for p in providers:
        try:
            have |= {n for (n, d, b, v) in dynsyms(p) if d}
        except Exception as e:
            print(f"  (skip {p}: {e})")
    missing = sorted(need - have)
    print(f"{lib}: {len(need)} unversioned strong imports, {len(missing)} not defined by {len(providers)} provider libs")
    if missing:
        dem = missing
        if shutil.which("c++filt"):
            dem = subprocess.run(["c++filt"], input="\n".join(missing), capture_output=True, text=True).stdout.splitlines()
        for mg, d in zip(missing, dem):
            print(f"  MISSING {d}" + ("" if d == mg else f"   [{mg}]"))
    return 1 if missing else 0

if __name__ == "__main__":
    sys.exit(main())
