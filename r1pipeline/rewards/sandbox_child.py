"""The process inside the code sandbox (started by `sandbox.py` as `python -I -S -B sandbox_child.py JOB`).

Standard library only, and nothing here is trusted by the parent: the parent reads back plain values and decides
pass/fail itself. This script's jobs are to confine itself before any untrusted code runs, then to run the program
and evaluate each candidate expression the parent sent, and to write one result line.

Confinement, in order (each layer that the kernel refuses is reported in the result, never silently assumed):
1. new network and PID namespaces (plus a user namespace when not root): no network at all, and every process the
   program starts dies with the namespace's first process;
2. resource limits: CPU seconds, address space, processes, open files, file size, no core files;
3. when running as root: switch to `nobody` keeping only CAP_DAC_READ_SEARCH, so that the interpreter's own files
   stay readable wherever they are installed (e.g. under /root) and RLIMIT_NPROC applies (root is exempt from it);
4. no_new_privs, then Landlock: read/execute only in the interpreter's and system library directories, write only in
   the working directory, no TCP bind/connect, no signals or abstract sockets outside the sandbox;
5. an audit hook (tripwire): opening sockets, starting processes, ctypes, killing processes, touching files outside
   the allowed directories, or reading the environment ends the process at once with exit code 86. It is a second
   line, not a boundary (PEP 578): the kernel layers above are what contain a program that gets past it.
"""
import builtins
import ctypes
import errno
import json
import os
import resource
import sys

VIOLATION_EXIT = 86
OUTPUT_EXIT = 128 + 25  # as if killed by SIGXFSZ (ignored by the PID namespace's first process: writes fail instead)
CRASH_EXIT = 70
RESULT_MARK = "\x1er1-sandbox-result "
NOBODY = 65534
CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID = 0x10000000, 0x40000000, 0x20000000
PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS = 1, 8, 38
CAP_DAC_READ_SEARCH = 2
SYS_LANDLOCK = (444, 445, 446)  # create_ruleset, add_rule, restrict_self (same number on every architecture)
LL_READ = 1 | 4 | 8  # EXECUTE | READ_FILE | READ_DIR
LL_FILE = 1 | 2 | 4 | (1 << 14) | (1 << 15)  # what a rule on a single file may grant: EXECUTE WRITE READ TRUNCATE IOCTL
PLAIN = (int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set, frozenset)
MAX_REPR = 100_000


def main() -> None:
    try:
        with open(sys.argv[1]) as f:
            job = json.load(f)
        layers = confine(job)
        run(job, layers)
    except OSError as exc:  # e.g. the result line refused by RLIMIT_FSIZE after the program filled its output
        os._exit(OUTPUT_EXIT if exc.errno == errno.EFBIG else CRASH_EXIT)
    except BaseException:  # noqa: BLE001 - no traceback: printing one reads this file, which the sandbox forbids
        os._exit(CRASH_EXIT)


def confine(job: dict) -> dict:
    libc = ctypes.CDLL(None, use_errno=True)
    root = os.geteuid() == 0
    layers = {"namespaces": libc.unshare(CLONE_NEWNET | CLONE_NEWPID | (0 if root else CLONE_NEWUSER)) == 0}
    if layers["namespaces"]:
        enter_pid_namespace(libc)
    lim = job["limits"]
    for res, value in ((resource.RLIMIT_CPU, (lim["cpu_s"], lim["cpu_s"] + 1)),
                       (resource.RLIMIT_AS, (lim["memory_mb"] << 20,) * 2),
                       (resource.RLIMIT_NPROC, (lim["processes"],) * 2),
                       (resource.RLIMIT_NOFILE, (lim["open_files"],) * 2),
                       (resource.RLIMIT_FSIZE, (lim["file_kb"] << 10,) * 2),
                       (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(res, value)
    layers["dropped_root"] = drop_root(libc, job["work"]) if root else False
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    layers["landlock"] = landlock(libc, job["read_paths"], job["work"])
    if job.get("tripwires", True):
        install_tripwires(job["read_paths"], job["work"])
    layers["tripwires"] = job.get("tripwires", True)
    return layers


def enter_pid_namespace(libc) -> None:
    """Fork: the child is process 1 of the new PID namespace and goes on; this process only relays its exit."""
    pid = os.fork()
    if pid == 0:
        libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)  # the relay killed -> the namespace dies with its first process
        return
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def drop_root(libc, work: str) -> bool:
    class CapHeader(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class CapData(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    os.chown(work, NOBODY, NOBODY)
    libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    keep = 1 << CAP_DAC_READ_SEARCH
    data = (CapData * 2)(CapData(keep, keep, 0), CapData(0, 0, 0))
    if libc.capset(ctypes.byref(CapHeader(0x20080522, 0)), data) != 0:  # _LINUX_CAPABILITY_VERSION_3
        raise OSError(ctypes.get_errno(), "capset")
    return True


def landlock(libc, read_paths: list, work: str) -> bool:
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(SYS_LANDLOCK[0], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return False
    fs_all = (1 << {1: 13, 2: 14, 3: 15, 4: 15}.get(abi, 16)) - 1

    class Ruleset(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]

    attr = Ruleset(fs_all, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)  # net: TCP bind+connect; scoped: sockets+signals
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = libc.syscall(SYS_LANDLOCK[0], ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return False
    rules = [(p, LL_READ) for p in read_paths] + [(work, fs_all), ("/dev/null", 2 | 4)]
    for path, access in rules:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        if not os.path.isdir(path):
            access &= LL_FILE
        rule = PathBeneath(access & fs_all, fd)
        libc.syscall(SYS_LANDLOCK[1], ruleset, 1, ctypes.byref(rule), ctypes.c_uint32(0))
        os.close(fd)
    ok = libc.syscall(SYS_LANDLOCK[2], ruleset, ctypes.c_uint32(0)) == 0
    os.close(ruleset)
    return ok


FORBIDDEN_EVENTS = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                    "os.forkpty", "os.kill", "os.killpg", "os.putenv", "os.unsetenv", "pty.", "ctypes.",
                    "os.symlink", "os.link", "sys.remote_exec", "_posixsubprocess")
FORBIDDEN_IMPORTS = {"ctypes", "_ctypes", "_posixsubprocess"}  # (subprocess and multiprocessing import the last)
PATH_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
               "os.utime", "os.chflags", "os.setxattr", "os.removexattr", "os.listdir", "os.scandir", "shutil.copyfile",
               "shutil.rmtree", "shutil.move", "os.chdir"}


def install_tripwires(read_paths: list, work: str) -> None:
    """Audit hook + environment tripwire; a hit writes the reason to stderr and exits with VIOLATION_EXIT."""
    write, _exit, isinstance_, str_, abspath = os.write, os._exit, isinstance, str, os.path.abspath
    readable = tuple(read_paths) + (work, "/dev/null")

    def trip(reason):
        write(2, ("\n[sandbox] forbidden: " + reason + "\n").encode(errors="replace"))
        _exit(VIOLATION_EXIT)

    def inside(path, roots):
        if isinstance_(path, int):
            return True
        p = abspath(os.fsdecode(path))
        return any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)

    def hook(event, args):
        if event.startswith(FORBIDDEN_EVENTS):
            trip(event)
        elif event == "import" and args[0].split(".")[0] in FORBIDDEN_IMPORTS:
            trip("import " + args[0])
        elif event == "open":
            path, mode, flags = args
            writing = (isinstance_(mode, str_) and any(c in mode for c in "wax+")) or (flags or 0) & 0o3103
            if not inside(path, (work,) if writing else readable):
                trip("open " + repr(path) + (" for writing" if writing else ""))
        elif event in PATH_EVENTS:
            roots = readable if event in ("os.listdir", "os.scandir") else (work,)
            for a in args:
                if isinstance_(a, (str_, bytes, os.PathLike)) and not inside(a, roots):
                    trip(event + " " + repr(a))

    class Tripwire(dict):
        def __getattribute__(self, name):
            trip("reading the environment")

        def __getitem__(self, key):
            trip("reading the environment")

        def __iter__(self):
            trip("reading the environment")

        def __len__(self):
            trip("reading the environment")

        def __contains__(self, key):
            trip("reading the environment")

    os.environ = os.environb = Tripwire()
    import posix
    posix.environ = Tripwire()
    for mod in [m for m in sys.modules if m.split(".")[0] in ("ctypes", "_ctypes")]:
        del sys.modules[mod]  # so that `import ctypes` by the program is an import event again
    sys.addaudithook(hook)


def encode(value, materialize: bool):
    """repr of a plain-data value (the parent parses it without running any code), else an error string."""
    if materialize and not isinstance(value, PLAIN) and hasattr(value, "__iter__"):
        value = list(value)  # map/filter/generator/dict view passed to list(), set(), sorted(), ... by the test
    if not plain(value, 0):
        return {"error": "unsupported value of type " + type(value).__name__}
    text = repr(value)
    return {"value": text} if len(text) <= MAX_REPR else {"error": "value too large"}


def plain(value, depth: int) -> bool:
    if type(value) not in PLAIN or depth > 50:
        return False
    if type(value) is dict:
        return all(plain(k, depth + 1) and plain(v, depth + 1) for k, v in value.items())
    if type(value) in (list, tuple, set, frozenset):
        return all(plain(v, depth + 1) for v in value)
    return True


def run(job: dict, layers: dict) -> None:
    """Program, then the dataset's setup code, then each candidate; one result line at the end."""
    out = os.dup(1)
    pristine = dict(vars(builtins))
    ns = {"__name__": "solution", "__builtins__": builtins}
    status, program_error, values = "ok", None, []
    try:
        exec(compile(job["program"], "<program>", "exec"), ns)
        exec(compile(job["setup"] or "", "<setup>", "exec"), ns)
    except MemoryError:
        status = "memory"
    except (SystemExit, KeyboardInterrupt):
        status = "exit"
    except BaseException as exc:  # noqa: BLE001 - a broken program fails its tests, it is not a sandbox error
        program_error = type(exc).__name__ + ": " + str(exc)[:300]
    for cand in job["candidates"] if status == "ok" and program_error is None else []:
        try:
            value = eval(compile(cand["expr"], "<test>", "eval"), ns if cand["user"] else {"__builtins__": pristine})
            values.append(encode(value, cand["materialize"]))
        except MemoryError:
            status = "memory"
            break
        except (SystemExit, KeyboardInterrupt):
            status = "exit"
            break
        except BaseException as exc:  # noqa: BLE001 - this test fails
            values.append({"error": type(exc).__name__ + ": " + str(exc)[:300]})
    line = json.dumps({"status": status, "program_error": program_error, "values": values, "layers": layers})
    os.write(out, ("\n" + RESULT_MARK + line + "\n").encode())


if __name__ == "__main__":
    main()
