#!/usr/bin/env python3
"""Writes a C++ header that holds a file's bytes as a constexpr array.

    embed_object.py INPUT OUTPUT NAME

Used at build time to put the compiled BPF object (socket_iterator.bpf.o)
into the library, so that ferryd loads it from memory and never depends on
a file installed next to it.
"""
import sys


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    source, target, name = sys.argv[1:]
    with open(source, 'rb') as f:
        data = f.read()
    rows = []
    for start in range(0, len(data), 16):
        rows.append('\t' + ', '.join('0x%02x' % b for b in data[start:start + 16]) + ',')
    with open(target, 'w') as f:
        f.write('// Generated at build time by agent/repair/embed_object.py from %s; do not edit.\n'
                % source.rsplit('/', 1)[-1])
        f.write('#pragma once\n\n')
        f.write('namespace ferry::repair::embedded {\n\n')
        # ELF readers expect the headers aligned as in a mapped file.
        f.write('alignas(8) inline constexpr unsigned char %s[] = {\n' % name)
        f.write('\n'.join(rows))
        f.write('\n};\n\n} // namespace ferry::repair::embedded\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
