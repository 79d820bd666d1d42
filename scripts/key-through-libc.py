# Which calls of libc's vectorised copy and search routines see the key (a gdb script).
#
#   KEY_WATCH=<file> gdb -batch -x scripts/key-through-libc.py --args <proxy> [options]
#
# <file> holds, one per line: the file the proxy's stdin comes from, then `env:NAME=value` lines
# for the proxy's environment (otherwise empty, as in every recipe), then the needles to watch
# for (the key first). Every call of memmove/memcpy/mempcpy (source bytes) or memchr (searched bytes)
# whose bytes contain a needle prints `THROUGH <routine> needle=<index> size=<bytes>`.
#
# Why it matters: on an x86-64 machine with AVX-512 these routines hold the bytes in vector
# registers (zmm16-zmm31) after they return, and whatever saves all registers next (the dynamic
# linker's lazy binding, a signal handler's frame) writes them to the stack, where nothing zeroes
# them. The key-copies test found such a copy of the key on the main thread's stack.
#
# Runs the proxy until it exits (stop it with
# SIGTERM; server-info names its pid), then prints `WATCHED <n>`, the calls inspected, so that a
# run that watched nothing is visible.
import os
import re

import gdb

lines = open(os.environ["KEY_WATCH"]).read().split("\n")
stdin_file = lines[0]
env = [l[4:] for l in lines[1:] if l.startswith("env:")]
needles = [l.encode() for l in lines[1:] if l and not l.startswith("env:")]

ROUTINES = re.compile(r"^__(memmove|memcpy|mempcpy|memchr)_[a-z0-9_]+$")
watched = 0
owner = {}  # address -> the one breakpoint that reports there (aliases share an address)


class Watch(gdb.Breakpoint):
    def __init__(self, name):
        super().__init__(name, internal=True)
        self.routine = name
        self.search = "memchr" in name

    def stop(self):
        global watched
        pc = int(gdb.parse_and_eval("$pc"))
        if owner.setdefault(pc, self.number) != self.number:
            return False
        watched += 1
        size = int(gdb.parse_and_eval("$rdx"))
        start = int(gdb.parse_and_eval("$rdi" if self.search else "$rsi"))
        if size <= 0:
            return False
        try:
            data = gdb.selected_inferior().read_memory(start, min(size, 1 << 20)).tobytes()
        except gdb.MemoryError:
            return False
        for i, needle in enumerate(needles):
            if needle in data:
                print(f"THROUGH {self.routine} needle={i} size={size}", flush=True)
        return False


def arm(event):
    # Once libc is loaded: one breakpoint per variant (which one runs depends on the CPU).
    if not any("libc.so" in (o.filename or "") for o in gdb.objfiles()):
        return
    gdb.events.new_objfile.disconnect(arm)
    out = gdb.execute("info functions -n ^__mem", to_string=True)
    names = sorted({m for m in re.findall(r"\b(__mem\w+)\b", out) if ROUTINES.match(m)})
    for name in names:
        Watch(name)
    print(f"ARMED {len(names)}", flush=True)


gdb.execute("set pagination off")
gdb.execute("set confirm off")
for sig in ("SIGSEGV", "SIGUSR1", "SIGUSR2", "SIGPIPE", "SIG32", "SIG33", "SIG34", "SIG35", "SIGTERM"):
    gdb.execute(f"handle {sig} nostop noprint pass")
gdb.execute("unset environment")  # the recipes' cleared environment: nothing of gdb's goes in
for pair in env:
    gdb.execute(f"set environment {pair}")
gdb.events.new_objfile.connect(arm)


# `run` with a redirection replaces the arguments: they are given again.
args = gdb.execute("show args", to_string=True)
args = args[args.index('"') + 1 : args.rindex('"')]
gdb.execute(f"run {args} < {stdin_file} > /dev/null 2>&1")
print(f"WATCHED {watched}", flush=True)
