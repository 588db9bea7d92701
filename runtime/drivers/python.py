"""vial's Python driver: a persistent interpreter session behind a pipe.

Started as the sandbox's pid 1, it first forks: pid 1 stays behind as the
sandbox's init (see _init), the child is the driver. vial writes requests
on our stdin and
reads answers on our stdout, framed as described in drivers/README.md. The
protocol descriptors are moved to private, close-on-exec fds at start; fds
1 and 2 then point at capture pipes, so nothing the user code or its
subprocesses print can reach the protocol stream.

Standard library only; Python 3.9+.

Start-up time is part of every create_context, so at start the driver
imports only built-in modules (_ast, _signal, _thread: no .py file to find,
read or compile) and nothing a bare `python3 -c` would not load. The rest
is imported when first needed (traceback at the first error, resource at
the first call), and the modules the driver adjusts (linecache,
matplotlib.pyplot) are patched by an import hook when the user's code
imports them. Measured on the development VM this took the time from exec
to ready from about 29 ms to 13 ms (a bare `python3 -c 'print(1)'`: 9 ms).
"""

import _ast
import _signal
import _thread
import builtins
import os
import sys
import time

CAP = int(os.environ.pop("VIAL_OUTPUT_CAP", "") or 1 << 20)
VALUE_CAP = CAP
# An error's message and its traceback are cut to this each (vial cuts
# them to the same): a 34 MB exception message must not make the answer
# too large for vial to read.
ERR_CAP = 64 << 10
MAX_IMAGES = 16
IMAGE_BYTES = int(os.environ.pop("VIAL_IMAGE_BYTES", "") or 4 << 20)
BLOCKED_IMPORTS = os.environ.pop("VIAL_BLOCKED_IMPORTS", "")
DRIVER_FILE = os.path.abspath(__file__)
SENTINEL = ("\x00vial-end-%s\x00" % os.urandom(12).hex()).encode()

# --- pid 1 ------------------------------------------------------------------


def _init():
    """Makes pid 1 an init for the driver, with a fork instead of an exec.

    The kernel hands every orphan in the sandbox to pid 1, which must reap
    it or the zombie holds a pid until the pids limit stops all forking.
    The driver cannot reap them itself without stealing exit statuses that
    user code waits for, so pid 1 forks: the child goes on as the driver,
    and pid 1 only waits for any child (orphans included), passes the
    signals vial sends on to the driver, and exits with its status. A fork
    costs a fraction of a millisecond; the separate init vial puts in front
    of node (which cannot fork) costs an extra exec, about 17 ms under
    gVisor. Returns only in the child.
    """
    if os.getpid() != 1:
        return
    pid = os.fork()
    if pid == 0:
        return
    # Pid 1 keeps nothing open: vial's end of stdin must reach the driver
    # as EOF, and the output pipes must close when the driver's do.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)

    def forward(signum, frame):
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH"):
        _signal.signal(getattr(_signal, name), forward)
    while True:
        try:
            child, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)
        if child == pid:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


_init()

# --- protocol fds -----------------------------------------------------------

# os.dup returns non-inheritable fds: user subprocesses never see them.
_proto_in = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
_proto_out_fd = os.dup(1)
_devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(_devnull, 0)
os.close(_devnull)
_proto_lock = _thread.allocate_lock()


def send(kind, mid, fields):
    parts = [("vial1 %s %d\n" % (kind, mid)).encode()]
    for name, data in fields:
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        parts.append(("%s %d\n" % (name, len(data))).encode())
        parts.append(data)
        parts.append(b"\n")
    parts.append(b"end\n")
    buf = memoryview(b"".join(parts))
    with _proto_lock:
        while buf:
            n = os.write(_proto_out_fd, buf)
            buf = buf[n:]


def _readline():
    line = _proto_in.readline(512)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ValueError("protocol line too long or truncated")
    return line[:-1].decode("ascii")


def receive():
    """Returns (kind, id, {name: bytes}) or None at end of input."""
    hdr = _readline()
    if hdr is None:
        return None
    magic, kind, mid = hdr.split(" ")
    if magic != "vial1":
        raise ValueError("bad header %r" % hdr)
    fields = {}
    while True:
        line = _readline()
        if line is None:
            raise ValueError("end of input inside a message")
        if line == "end":
            return kind, int(mid), fields
        name, n = line.split(" ")
        n = int(n)
        data = _proto_in.read(n + 1)
        if len(data) != n + 1 or data[-1:] != b"\n":
            raise ValueError("truncated field %r" % name)
        fields[name] = data[:-1]


# --- output capture ---------------------------------------------------------


def _block_sigint():
    """Keeps SIGINT for the main thread, where it interrupts user code."""
    try:
        _signal.pthread_sigmask(_signal.SIG_BLOCK, [_signal.SIGINT])
    except (AttributeError, OSError):
        pass


class Capture:
    """Drains one pipe in a thread, keeping at most CAP bytes per call.

    A call's output ends at SENTINEL, which the driver writes to the fd
    after the code finished: every byte written before it (by Python or by
    a subprocess that exited) belongs to the call. Bytes a background
    process writes later go to the next call.

    Plain _thread primitives, not threading (whose import costs more than
    the rest of the driver's start): mu guards the buffers; wake is a
    binary semaphore, released by the drain thread when it finishes a
    segment and taken by finish.
    """

    def __init__(self, fd):
        r, w = os.pipe()  # both non-inheritable
        self.w = w
        self.fd = fd
        self.r = r
        self.mu = _thread.allocate_lock()
        self.wake = _thread.allocate_lock()
        self.wake.acquire()  # held: no segment finished yet
        self.buf = bytearray()
        self.truncated = False
        self.done = []  # finished segments
        _thread.start_new_thread(self._drain, ())

    def attach(self):
        """Points fd at the pipe (again: user code may have moved it)."""
        os.dup2(self.w, self.fd)  # dup2 makes it inheritable, as it should be

    def _add(self, data):
        room = CAP - len(self.buf)
        if len(data) > room:
            self.truncated = True
            data = data[:max(room, 0)]
        self.buf += data

    def _drain(self):
        _block_sigint()
        keep = len(SENTINEL) - 1
        pending = b""
        while True:
            try:
                chunk = os.read(self.r, 1 << 16)
            except InterruptedError:
                continue
            if not chunk:
                return
            pending += chunk
            with self.mu:
                while True:
                    i = pending.find(SENTINEL)
                    if i < 0:
                        break
                    self._add(pending[:i])
                    pending = pending[i + len(SENTINEL):]
                    self.done.append((bytes(self.buf), self.truncated))
                    self.buf = bytearray()
                    self.truncated = False
                    # Only this thread releases wake, so it cannot become
                    # unlocked between the check and the release.
                    if self.wake.locked():
                        self.wake.release()
                if len(pending) > keep:
                    self._add(pending[:-keep])
                    pending = pending[-keep:]

    def mark(self):
        """Ends the current call's segment (collect it with finish)."""
        try:
            os.write(self.w, SENTINEL)
        except OSError:
            pass

    def finish(self, timeout=2.0):
        """Returns the segment ended by mark as (bytes, truncated)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.mu:
                if self.done:
                    return self.done.pop(0)
            left = deadline - time.monotonic()
            if left <= 0:
                with self.mu:
                    # The drain thread is stuck; take what it has.
                    out, tr = bytes(self.buf), self.truncated
                    self.buf, self.truncated = bytearray(), False
                    return out, tr
            self.wake.acquire(True, left)


# --- interrupts, process group, zombies ---------------------------------------

_in_user_code = False


def _pgroup_members():
    """Other processes in our process group (the user's subprocesses)."""
    me, pgrp, out = os.getpid(), os.getpgrp(), []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
            # Fields after the ")" that ends the command name.
            rest = stat[stat.rindex(b")") + 2:].split()
            if int(rest[2]) == pgrp:
                out.append(int(name))
        except (OSError, ValueError, IndexError):
            pass
    return out


def _on_sigint(signum, frame):
    # Interrupt foreground subprocesses too (os.system, subprocess.run):
    # vial only signals us (through the sandbox's init). Each is signalled by pid
    # rather than with killpg so that we do not signal ourselves again.
    if os.getpgrp() == os.getpid():
        for pid in _pgroup_members():
            try:
                os.kill(pid, _signal.SIGINT)
            except OSError:
                pass
    if _in_user_code:
        raise KeyboardInterrupt
    # Between calls an interrupt has nothing to stop.


def _system(command):
    """os.system, interruptible.

    os.system ignores SIGINT while it waits, so a timed-out
    os.system('sleep 60') could not be interrupted. This version can: the
    KeyboardInterrupt kills the child. It returns the same wait status.
    """
    import subprocess

    with subprocess.Popen(command, shell=True) as p:
        try:
            rc = p.wait()
        except BaseException:
            p.kill()
            raise
    return rc << 8 if rc >= 0 else -rc


# --- matplotlib -----------------------------------------------------------------

_images = []
_images_omitted = 0


def _grab_figures():
    """Renders every open pyplot figure to PNG and closes it. A call keeps
    at most MAX_IMAGES images of IMAGE_BYTES together; the others are
    counted in _images_omitted."""
    global _images_omitted
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    import io

    try:
        for num in plt.get_fignums():
            if len(_images) >= MAX_IMAGES:
                _images_omitted += 1
                continue
            fig = plt.figure(num)
            b = io.BytesIO()
            fig.savefig(b, format="png", bbox_inches="tight")
            png = b.getvalue()
            if len(png) > IMAGE_BYTES - sum(len(i) for i in _images):
                _images_omitted += 1
            else:
                _images.append(png)
        plt.close("all")
    except Exception as e:  # a broken figure must not break the call
        sys.stderr.write("vial: capturing figures: %r\n" % (e,))


def _patch_pyplot(plt):
    import warnings

    warnings.filterwarnings("ignore", message=".*(non-interactive|non-GUI backend).*")

    def show(*args, **kwargs):
        _grab_figures()

    plt.show = show


class _PatchingLoader:
    """Runs a module's own loader, then a patch on the module, then puts
    the original loader back on the module and its spec."""

    def __init__(self, loader, patch):
        self.loader = loader
        self.patch = patch

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        try:
            self.loader.exec_module(module)
        finally:
            module.__loader__ = self.loader
            spec = getattr(module, "__spec__", None)
            if spec is not None:
                spec.loader = self.loader
        self.patch(module)

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _ImportHook:
    """A meta path finder that patches a module as it is imported, so that
    even the call that first imports it gets the patched version. It never
    imports a module itself: it asks the finders after it for the spec and
    wraps the loader."""

    def __init__(self, patches):
        self.patches = patches

    def find_spec(self, name, path=None, target=None):
        patch = self.patches.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


# --- blocked imports -----------------------------------------------------------
#
# VIAL_BLOCKED_IMPORTS is the operator's blocked_imports: comma-separated
# rules, each a module (`subprocess`, which blocks its submodules too) or a
# module's attribute (`os.system`). It is a guard in front of the sandbox,
# not the sandbox itself: it stops the obvious ways code names a module or
# a function, and code that wants to can get around it (a module already
# loaded is in sys.modules and in the libraries that imported it, e.g.
# asyncio.subprocess.subprocess; os.system is also posix.system; ctypes
# can call anything). What protects the host is the sandbox.
#
# A module rule refuses an import requested by the user's code: its cells,
# code they exec, and modules outside the installed Python (the workspace,
# /tmp, the user's site directory). Imports made by the standard library
# or installed packages go on, so that `import asyncio` or matplotlib
# still work although they import subprocess themselves. Imports are
# checked in builtins.__import__ (so a module the driver or the start-up
# already loaded is covered), in importlib.import_module, and by a finder
# first on sys.meta_path (for the other ways into the import system). An
# attribute rule replaces the attribute, for everyone, as soon as its
# module is loaded: with a function that raises PermissionError, or an
# object that does on any use.

_POLICY = (" is blocked by the operator's policy (blocked_imports); this is a guard"
           " in front of the sandbox, not the sandbox itself")
# Code under these directories is the installed Python's (standard library
# and site-packages), which the user cannot change in a sandbox.
_TRUSTED = tuple(sorted({os.path.join(p, d) + os.sep
                         for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
                         for d in ("lib", "lib64")}))
_rules = ()


def _parse_rules(spec):
    rules = []
    for r in spec.split(","):
        r = r.strip()
        if not r:
            continue
        if all(part.isidentifier() for part in r.split(".")):
            rules.append(r)
        else:
            os.write(2, ("vial python driver: ignoring blocked import %r\n" % r).encode())
    return tuple(rules)


def _rule_for(name):
    """The rule that blocks importing module name, or None."""
    for r in _rules:
        if name == r or name.startswith(r + "."):
            return r
    return None


def _user_frame(f):
    """Whether frame f, the first that is not the import system's, is the
    user's code rather than the driver's or the installed Python's."""
    while f is not None:
        fn = f.f_code.co_filename
        if fn.startswith("<frozen importlib") or (
                fn.startswith(_TRUSTED) and fn.endswith(os.sep + os.path.join("importlib", "__init__.py"))):
            f = f.f_back
            continue
        return not (fn == DRIVER_FILE or fn.startswith(_TRUSTED) or fn.startswith("<frozen "))
    return False


def _refuse(rule, name):
    raise ImportError("import of %r%s" % (rule, _POLICY), name=name)


def _check_import(name, fromlist, frame):
    rule = _rule_for(name)
    if rule is None and fromlist:
        for item in fromlist:
            if isinstance(item, str) and item != "*":
                rule = _rule_for(name + "." + item)
                if rule is not None:
                    break
    if rule is not None and _user_frame(frame):
        _refuse(rule, name)


def _absolute(name, globals, level):
    if level <= 0:
        return name
    pkg = (globals or {}).get("__package__") or ""
    bits = pkg.rsplit(".", level - 1)
    if not pkg or len(bits) < level:
        return name  # the import system reports the error
    return bits[0] + "." + name if name else bits[0]


class _BlockedFinder:
    """First on sys.meta_path: refuses a blocked module that is not loaded
    yet when the user's code asks for it by a way that does not pass
    through builtins.__import__."""

    def find_spec(self, name, path=None, target=None):
        rule = _rule_for(name)
        if rule is not None and _user_frame(sys._getframe(1)):
            _refuse(rule, name)
        return None


class _BlockedModule(type(sys)):
    def __getattr__(self, attr):
        raise PermissionError(self.__doc__)


class _BlockedValue:
    def __init__(self, msg):
        object.__setattr__(self, "_msg", msg)

    def _deny(self, *args, **kwargs):
        raise PermissionError(object.__getattribute__(self, "_msg"))

    def __getattr__(self, attr):
        self._deny()

    __call__ = __getitem__ = __iter__ = __len__ = __contains__ = __setattr__ = _deny
    __bool__ = __int__ = __str__ = __fspath__ = _deny

    def __repr__(self):
        return "<%s>" % object.__getattribute__(self, "_msg")


def _blocker(rule, orig):
    msg = "use of %r%s" % (rule, _POLICY)
    if isinstance(orig, type(sys)):
        return _BlockedModule(orig.__name__, msg)
    if callable(orig):
        def blocked(*args, **kwargs):
            raise PermissionError(msg)

        blocked.__name__ = blocked.__qualname__ = getattr(orig, "__name__", rule.rpartition(".")[2])
        blocked.__doc__ = msg
        return blocked
    return _BlockedValue(msg)


def _attr_patch(attrs):
    def patch(module):
        for rule, attr in attrs:
            if hasattr(module, attr):
                setattr(module, attr, _blocker(rule, getattr(module, attr)))
    return patch


def _patch_importlib(importlib):
    orig = importlib.import_module

    def import_module(name, package=None):
        if _rules:
            absolute = name
            if name.startswith("."):
                level = len(name) - len(name.lstrip("."))
                absolute = _absolute(name[level:], {"__package__": package}, level)
            _check_import(absolute, (), sys._getframe(1))
        return orig(name, package)

    import_module.__doc__ = orig.__doc__
    importlib.import_module = import_module


def _install_blocked(patches):
    """Installs the rules of VIAL_BLOCKED_IMPORTS, before any user code:
    the __import__ wrapper and the finder, and the attribute patches (at
    once for loaded modules, through patches and the import hook for the
    others)."""
    global _rules
    _rules = _parse_rules(BLOCKED_IMPORTS)
    if not _rules:
        return
    orig_import = builtins.__import__

    def __import__(name, globals=None, locals=None, fromlist=(), level=0):
        _check_import(_absolute(name, globals, level), fromlist, sys._getframe(1))
        return orig_import(name, globals, locals, fromlist, level)

    __import__.__doc__ = orig_import.__doc__
    builtins.__import__ = __import__
    attrs = {}
    for r in _rules:
        mod, _, attr = r.rpartition(".")
        if mod:
            attrs.setdefault(mod, []).append((r, attr))
    attrs.setdefault("importlib", [])
    for mod, pairs in attrs.items():
        patch = _attr_patch(pairs)
        if mod == "importlib":
            patch = (lambda p: lambda m: (_patch_importlib(m), p(m)))(patch)
        if mod in patches:
            patch = (lambda a, b: lambda m: (a(m), b(m)))(patches[mod], patch)
        if sys.modules.get(mod) is not None:
            patch(sys.modules[mod])
        else:
            patches[mod] = patch


# --- running code ------------------------------------------------------------

_main = type(sys)("__main__")
_main.__dict__["__builtins__"] = builtins
user_globals = _main.__dict__
_loop = None
_cell = 0
# The source of each cell, for tracebacks and inspect. Kept here until
# linecache is first imported (by traceback at the first error, or by the
# user), then handed to it (_patch_linecache).
_cells = {}


def _patch_linecache(linecache):
    linecache.cache.update(_cells)
    _cells.clear()


def _compile(code):
    """Compiles code; returns (body, last_expr) code objects."""
    global _cell
    _cell += 1
    filename = "<cell %d>" % _cell
    entry = (len(code), None, code.splitlines(True), filename)
    lc = sys.modules.get("linecache")
    if lc is not None:
        lc.cache[filename] = entry
    else:
        _cells[filename] = entry
    flags = getattr(_ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
    tree = compile(code, filename, "exec", _ast.PyCF_ONLY_AST | flags, dont_inherit=True)
    last = None
    if tree.body and isinstance(tree.body[-1], _ast.Expr):
        last = _ast.Expression(tree.body.pop().value)
    body = compile(tree, filename, "exec", flags, dont_inherit=True)
    if last is not None:
        last = compile(last, filename, "eval", flags, dont_inherit=True)
    return body, last


def _run(codeobj):
    res = eval(codeobj, user_globals)
    if codeobj.co_flags & 0x80:  # CO_COROUTINE: top-level await
        global _loop
        import asyncio

        if _loop is None:
            _loop = asyncio.new_event_loop()
        res = _loop.run_until_complete(res)
    return res


def _drop_driver_frames(traceback, te, seen):
    """Removes the driver's own frames (the exec call, the SIGINT
    handler) from a TracebackException and the exceptions chained to it."""
    if te is None or id(te) in seen:
        return
    seen.add(id(te))
    frames = [f for f in te.stack if os.path.abspath(f.filename) != DRIVER_FILE]
    te.stack = traceback.StackSummary.from_list(frames)
    _drop_driver_frames(traceback, te.__cause__, seen)
    _drop_driver_frames(traceback, te.__context__, seen)
    for sub in getattr(te, "exceptions", None) or ():
        _drop_driver_frames(traceback, sub, seen)


def _cut(s, n):
    """Cuts text s to at most n bytes of UTF-8, keeping its start and,
    mostly, its end (where a traceback names the error), with a note
    between."""
    b = s.encode("utf-8", "surrogateescape")
    if len(b) <= n:
        return s
    head, tail = n // 4, n - n // 4 - 64
    return "%s\n[... %d bytes cut ...]\n%s" % (
        b[:head].decode("utf-8", "surrogateescape"), len(b) - head - tail,
        b[-tail:].decode("utf-8", "surrogateescape"))


def _cut_messages(te, seen):
    """Cuts the message of a TracebackException, and of those chained to
    it, before it is formatted: a huge message would otherwise fill the
    traceback."""
    if te is None or id(te) in seen:
        return
    seen.add(id(te))
    if isinstance(getattr(te, "_str", None), str) and len(te._str) > ERR_CAP // 4:
        te._str = _cut(te._str, ERR_CAP // 4)
    _cut_messages(te.__cause__, seen)
    _cut_messages(te.__context__, seen)
    for sub in getattr(te, "exceptions", None) or ():
        _cut_messages(sub, seen)


def _error_fields(e):
    import traceback

    t = type(e)
    name = t.__qualname__
    if t.__module__ not in ("builtins", "__main__"):
        name = "%s.%s" % (t.__module__, name)
    try:
        msg = str(e)
    except Exception:
        msg = "<unprintable %s>" % t.__name__
    try:
        te = traceback.TracebackException(t, e, e.__traceback__)
        _drop_driver_frames(traceback, te, set())
        _cut_messages(te, set())
        tb = "".join(te.format())
    except Exception:
        tb = "".join(traceback.format_exception(t, e, e.__traceback__))
    return [("error_name", name[:256]), ("error_message", _cut(msg, ERR_CAP)),
            ("traceback", _cut(tb, ERR_CAP))]


def _cap(s):
    b = s.encode("utf-8", "surrogateescape")
    if len(b) > VALUE_CAP:
        return b[:VALUE_CAP], True
    return b, False


def execute(code, out, err):
    global _in_user_code
    import resource

    fields = []
    status = 0
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    rc0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        _in_user_code = True
        body, last = _compile(code)
        _run(body)
        value = _run(last) if last is not None else None
        _in_user_code = False
        if value is not None:
            v, tr = _cap(repr(value))
            fields.append(("value", v))
            if tr:
                fields.append(("value_truncated", "1"))
    except SystemExit as e:
        _in_user_code = False
        code_ = e.code
        if code_ is None:
            status = 0
        elif isinstance(code_, int):
            status = code_
        else:
            status = 1
            sys.stderr.write("%s\n" % (code_,))
        if status != 0:
            fields += _error_fields(e)
    except BaseException as e:  # noqa: B036 - KeyboardInterrupt included
        _in_user_code = False
        status = 1
        if isinstance(e, SyntaxError):
            e.__traceback__ = None
        fields += _error_fields(e)
    _in_user_code = False
    try:
        _grab_figures()
    except BaseException:
        pass
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    rc1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
           + rc1.ru_utime + rc1.ru_stime - rc0.ru_utime - rc0.ru_stime)
    fields.append(("exit_status", str(status)))
    fields.append(("cpu_ns", str(int(cpu * 1e9))))
    fields.append(("peak_rss", str(ru1.ru_maxrss * 1024)))
    return fields


def _reset_streams(out, err):
    """Gives each call a fresh view of stdout/stderr on the capture pipes."""
    out.attach()
    err.attach()
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:
            pass
    sys.stdout, sys.stderr = _stdout, _stderr


def main():
    global _stdout, _stderr, _images_omitted
    import io

    try:
        os.setsid()  # our own process group, so an interrupt can reach it
    except OSError:
        pass  # already a group leader
    out, err = Capture(1), Capture(2)
    out.attach()
    err.attach()
    _stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                               errors="backslashreplace", line_buffering=False)
    _stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                               errors="backslashreplace", line_buffering=True)
    sys.stdout, sys.stderr = _stdout, _stderr
    sys.__stdout__, sys.__stderr__ = _stdout, _stderr
    sys.stdin = open(os.devnull)

    # The user's view: the REPL's sys.path (cwd first, not our directory).
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(DRIVER_FILE):
        sys.path[0] = ""
    sys.argv = [""]
    sys.modules["__main__"] = _main
    os.environ.setdefault("MPLBACKEND", "Agg")
    patches = {
        "matplotlib.pyplot": _patch_pyplot,
        "linecache": _patch_linecache,
    }
    for name in [n for n in patches if sys.modules.get(n) is not None]:
        patches.pop(name)(sys.modules[name])  # imported at start-up (site)
    os.system = _system
    _install_blocked(patches)
    sys.meta_path.insert(0, _ImportHook(patches))
    if _rules:
        # First, so that no other finder (the patching hook included)
        # asks for a blocked module on the user's behalf.
        sys.meta_path.insert(0, _BlockedFinder())
    _signal.signal(_signal.SIGINT, _on_sigint)
    # Without a handler SIGTERM would be ignored if we were pid 1.
    _signal.signal(_signal.SIGTERM, lambda s, f: os._exit(143))

    send("ready", 0, [("language", "python"),
                      ("version", "%d.%d.%d" % sys.version_info[:3])])
    while True:
        try:
            msg = receive()
        except KeyboardInterrupt:
            continue
        if msg is None:
            return
        kind, mid, fields = msg
        if kind == "ping":
            # A health check: answered at once, the session untouched.
            send("pong", mid, [])
            continue
        if kind != "exec":
            send("result", mid, [("error_name", "ProtocolError"),
                                 ("error_message", "unknown request %r" % kind),
                                 ("exit_status", "1")])
            continue
        code = fields.get("code", b"").decode("utf-8", "replace")
        _reset_streams(out, err)
        del _images[:]
        _images_omitted = 0
        res = execute(code, out, err)
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except BaseException:
                pass
        out.mark()
        err.mark()
        so, so_tr = out.finish()
        se, se_tr = err.finish()
        res += [("stdout", so), ("stderr", se)]
        if so_tr:
            res.append(("stdout_truncated", "1"))
        if se_tr:
            res.append(("stderr_truncated", "1"))
        res += [("image_png", png) for png in _images]
        if _images_omitted:
            res.append(("images_omitted", str(_images_omitted)))
        del _images[:]
        send("result", mid, res)


if __name__ == "__main__":
    main()
