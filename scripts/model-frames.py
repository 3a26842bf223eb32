#!/usr/bin/env python3
"""What compressing each appended line as a frame of its own costs, against one zstd stream
flushed after every line (what an append would cost if it were a block of its file's stream):

    pip install zstandard
    python3 scripts/model-frames.py DIR [LEVEL]

For every file of DIR, each line is compressed as the store compresses an append (a frame with
the 64 KiB before it as a raw-content prefix, at LEVEL, 9 by default), and again as a block of
one stream per file (flushed after each line); both are compared with `zstd -3` of the whole
files. Results of 2026-12-02 are in docs/store.md ("Next: an append that is not a chunk")."""
import zstandard as zs, sys, os
src = sys.argv[1]; level = int(sys.argv[2]) if len(sys.argv) > 2 else 9
W = 65536
a = c = d = n = 0
files = sorted(f for f in os.listdir(src) if os.path.isfile(os.path.join(src, f)))
for f in files:
    data = open(os.path.join(src, f), 'rb').read()
    d += len(zs.ZstdCompressor(level=3).compress(data))
    lines = data.splitlines(keepends=True)
    at = 0
    cobj = zs.ZstdCompressor(level=level, write_content_size=False).compressobj()
    for ln in lines:
        prefix = data[max(0, at - W):at]
        if prefix:
            dct = zs.ZstdCompressionDict(prefix, dict_type=zs.DICT_TYPE_RAWCONTENT)
            cc = zs.ZstdCompressor(level=level, dict_data=dct, write_dict_id=False)
        else:
            cc = zs.ZstdCompressor(level=level)
        a += len(cc.compress(ln))
        c += len(cobj.compress(ln)) + len(cobj.flush(zs.COMPRESSOBJ_FLUSH_BLOCK))
        at += len(ln); n += 1
    c += len(cobj.flush())
print(f"{src}: {n} lines; separate frames {a:,} ({a/d:.3f}x zstd -3, {(a-c)/n:.1f} B/line over the stream); one stream flushed per line {c:,} ({c/d:.3f}x); zstd -3 whole {d:,}")
