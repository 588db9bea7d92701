// vial's JavaScript driver: a persistent Node.js session behind a pipe.
//
// Runs as the sandbox's init process; Node 18+ built-ins only. vial writes
// requests on stdin and reads answers on stdout, framed as described in
// drivers/README.md.
//
// Two processes. Node cannot point its own fds 1 and 2 elsewhere (it has
// no dup2), so this one, the parent, keeps the protocol and starts a
// kernel process that runs the user's code with stdout and stderr on pipes
// the parent drains and caps, and an IPC channel for requests and
// results. The parent never runs user code, so it always drains and always
// hears vial's SIGINT, which it passes to the kernel's process group.
//
// Node can only wait for its own children, so the orphans the user's code
// leaves are reaped by vial's init, which runs this driver (see package
// runtime/pid1).
//
// The session survives what would end a Node script: process.exit() ends
// the call with its exit status (as sys.exit does in Python), and an
// uncaught exception or unhandled rejection ends the call that is awaiting
// with that error (between calls it is printed, as the REPL does). If the
// kernel dies all the same (process.abort(), a signal), the call in
// progress is answered with what it printed and marked as the session's
// end.

'use strict';

const fs = require('fs');

// An error's message and its stack are cut to this each (vial cuts them to
// the same): a huge thrown message must not make the answer too large for
// vial to read.
const ERR_CAP = 64 << 10;

// cutBytes cuts s to at most n bytes of UTF-8, on a character boundary.
function cutBytes(s, n) {
  if (s.length <= n / 3) return s;
  const b = Buffer.from(s);
  if (b.length <= n) return s;
  return b.subarray(0, n).toString().replace(/\uFFFD$/, '');
}

// cutText cuts s to at most n bytes, keeping its start and, mostly, its
// end (where a stack names the error), with a note between.
function cutText(s, n) {
  if (s.length <= n / 3) return s;
  const b = Buffer.from(s);
  if (b.length <= n) return s;
  const head = n >> 2;
  const tail = n - head - 64;
  return `${b.subarray(0, head).toString()}\n[... ${b.length - head - tail} bytes cut ...]\n${b.subarray(b.length - tail).toString()}`;
}

if (process.argv[2] === '--kernel') {
  kernel();
} else {
  parent();
}

function parent() {
  const { spawn } = require('child_process');
  const crypto = require('crypto');
  const CAP = Number(process.env.VIAL_OUTPUT_CAP) || 1 << 20;
  delete process.env.VIAL_OUTPUT_CAP;
  delete process.env.VIAL_IMAGE_BYTES;
  const SENTINEL = Buffer.from(`\0vial-end-${crypto.randomBytes(12).toString('hex')}\0`);

  function writeAll(fd, buf) {
    let off = 0;
    while (off < buf.length) {
      try {
        off += fs.writeSync(fd, buf, off);
      } catch (e) {
        if (e.code !== 'EAGAIN') throw e;
      }
    }
  }

  function send(kind, id, fields) {
    const parts = [Buffer.from(`vial1 ${kind} ${id}\n`)];
    for (const [name, value] of fields) {
      const data = Buffer.isBuffer(value) ? value : Buffer.from(String(value));
      parts.push(Buffer.from(`${name} ${data.length}\n`), data, Buffer.from('\n'));
    }
    parts.push(Buffer.from('end\n'));
    writeAll(1, Buffer.concat(parts));
  }

  // Capture keeps a stream's output up to CAP per call; a call's output
  // ends at SENTINEL, which the kernel writes after the code finished.
  class Capture {
    constructor(stream) {
      this.chunks = [];
      this.size = 0;
      this.truncated = false;
      this.pending = Buffer.alloc(0);
      this.segments = [];
      this.waiters = [];
      stream.on('data', (d) => this.data(d));
    }
    add(b) {
      const room = CAP - this.size;
      if (b.length > room) {
        this.truncated = true;
        b = b.subarray(0, Math.max(room, 0));
      }
      if (b.length) {
        this.chunks.push(b);
        this.size += b.length;
      }
    }
    data(d) {
      let p = this.pending.length ? Buffer.concat([this.pending, d]) : d;
      for (;;) {
        const i = p.indexOf(SENTINEL);
        if (i < 0) break;
        this.add(p.subarray(0, i));
        p = p.subarray(i + SENTINEL.length);
        const seg = { data: Buffer.concat(this.chunks), truncated: this.truncated };
        this.chunks = [];
        this.size = 0;
        this.truncated = false;
        const w = this.waiters.shift();
        if (w) w(seg);
        else this.segments.push(seg);
      }
      const keep = SENTINEL.length - 1;
      if (p.length > keep) {
        this.add(p.subarray(0, p.length - keep));
        p = p.subarray(p.length - keep);
      }
      this.pending = Buffer.from(p);
    }
    // rest returns what arrived since the last sentinel (the kernel died).
    rest() {
      this.add(this.pending);
      this.pending = Buffer.alloc(0);
      return { data: Buffer.concat(this.chunks), truncated: this.truncated };
    }
    next() {
      const seg = this.segments.shift();
      if (seg) return Promise.resolve(seg);
      return new Promise((resolve) => this.waiters.push(resolve));
    }
  }

  const kid = spawn(process.execPath, ['--expose-internals', __filename, '--kernel'], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    detached: true, // its own process group, for interrupts
    serialization: 'advanced',
  });
  const out = new Capture(kid.stdout);
  const err = new Capture(kid.stderr);
  const results = new Map();
  let ready = false;

  kid.on('message', (m) => {
    if (m.type === 'ready') {
      if (!ready) {
        ready = true;
        send('ready', 0, [['language', 'javascript'], ['version', process.versions.node]]);
        process.stdin.resume();
      }
      return;
    }
    const r = results.get(m.id);
    if (r) r(m);
  });
  let current = null; // the id of the call in progress
  kid.on('exit', (code, signal) => {
    // The session is gone; vial sees our exit as the context's death. The
    // call in progress gets an answer first, with the output the kernel
    // wrote, once its pipes are drained (or after a moment, if a process
    // it started holds them).
    process.stderr.write(`vial node driver: kernel exited (${signal || code})\n`);
    const status = signal ? 128 + (require('os').constants.signals[signal] || 0) : code || 1;
    const ended = Promise.all([kid.stdout, kid.stderr].map((s) => new Promise((resolve) => {
      if (s.readableEnded) resolve();
      else s.on('end', resolve).on('error', resolve);
    })));
    Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 200))]).then(() => {
      if (current !== null) {
        const so = out.rest();
        const se = err.rest();
        const why = signal ? `was killed by ${signal}` : `exited with status ${code}`;
        const f = [['error_name', 'SessionEnded'], ['error_message', `the JavaScript session ${why}`],
          ['traceback', `SessionEnded: the JavaScript session ${why}`], ['exit_status', status], ['exited', 1]];
        if (so.truncated) f.push(['stdout_truncated', 1]);
        if (se.truncated) f.push(['stderr_truncated', 1]);
        f.push(['stdout', so.data], ['stderr', se.data]);
        send('result', current, f);
      }
      process.exit(status);
    });
  });
  kid.send({ type: 'init', sentinel: SENTINEL.toString('latin1'), cap: CAP });

  process.on('SIGINT', () => {
    try {
      process.kill(-kid.pid, 'SIGINT');
    } catch (e) {
      // The kernel is gone; its exit handler ends us.
    }
  });
  process.on('SIGTERM', () => {
    try {
      process.kill(-kid.pid, 'SIGKILL');
    } catch (e) {}
    process.exit(143);
  });

  // Requests arrive one at a time; a queue keeps them in order anyway.
  let queue = Promise.resolve();
  async function handle(kind, id, fields) {
    if (kind === 'ping') {
      // A health check: answered at once, the session untouched.
      send('pong', id, []);
      return;
    }
    if (kind !== 'exec') {
      send('result', id, [['error_name', 'ProtocolError'], ['error_message', `unknown request ${kind}`], ['exit_status', 1]]);
      return;
    }
    const code = (fields.get('code') || Buffer.alloc(0)).toString('utf8');
    const result = new Promise((resolve) => results.set(id, resolve));
    current = id;
    kid.send({ type: 'exec', id, code });
    const m = await result;
    results.delete(id);
    const [so, se] = await Promise.all([out.next(), err.next()]);
    current = null;
    const f = [];
    // The kernel cuts these already; this keeps the answer bounded
    // whatever the kernel sends.
    if (m.hasValue) f.push(['value', cutBytes(String(m.value), CAP)]);
    if (m.error) {
      f.push(['error_name', cutBytes(String(m.error.name), 256)], ['error_message', cutText(String(m.error.message), ERR_CAP)],
        ['traceback', cutText(String(m.error.stack), ERR_CAP)]);
    }
    f.push(['exit_status', m.exitStatus != null ? m.exitStatus : m.error ? 1 : 0], ['cpu_ns', m.cpuNs], ['peak_rss', m.peakRss]);
    if (m.interrupted) f.push(['interrupted', 1]);
    if (so.truncated) f.push(['stdout_truncated', 1]);
    if (se.truncated) f.push(['stderr_truncated', 1]);
    f.push(['stdout', so.data], ['stderr', se.data]);
    send('result', id, f);
  }

  // An incremental reader for the wire format.
  let buf = Buffer.alloc(0);
  let msg = null; // {kind, id, fields, want: null | {name, n}}
  process.stdin.pause();
  process.stdin.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    for (;;) {
      if (msg && msg.want) {
        const { name, n } = msg.want;
        if (buf.length < n + 1) return;
        msg.fields.set(name, Buffer.from(buf.subarray(0, n)));
        buf = buf.subarray(n + 1);
        msg.want = null;
        continue;
      }
      const nl = buf.indexOf(10);
      if (nl < 0) {
        if (buf.length > 512) fatal('protocol line too long');
        return;
      }
      const line = buf.subarray(0, nl).toString('latin1');
      buf = buf.subarray(nl + 1);
      if (!msg) {
        const [magic, kind, id] = line.split(' ');
        if (magic !== 'vial1') fatal(`bad header ${JSON.stringify(line)}`);
        msg = { kind, id: Number(id), fields: new Map(), want: null };
      } else if (line === 'end') {
        const m = msg;
        msg = null;
        queue = queue.then(() => handle(m.kind, m.id, m.fields)).catch((e) => fatal(e.stack));
      } else {
        const [name, n] = line.split(' ');
        msg.want = { name, n: Number(n) };
      }
    }
  });
  process.stdin.on('end', () => {
    try {
      process.kill(-kid.pid, 'SIGKILL');
    } catch (e) {}
    process.exit(0);
  });

  function fatal(why) {
    process.stderr.write(`vial node driver: ${why}\n`);
    try {
      process.kill(-kid.pid, 'SIGKILL');
    } catch (e) {}
    process.exit(70);
  }
}

function kernel() {
  const vm = require('vm');
  const util = require('util');
  const path = require('path');
  const Module = require('module');

  // Node's own REPL machinery, when --expose-internals gave access: the
  // top-level await rewriter and the acorn parser behind it.
  let processTopLevelAwait = null;
  let acorn = null;
  try {
    processTopLevelAwait = require('internal/repl/await').processTopLevelAwait;
  } catch (e) {}
  try {
    acorn = require('internal/deps/acorn/acorn/dist/acorn');
  } catch (e) {}

  let sentinel = null;
  let CAP = 1 << 20;
  let cell = 0;
  let abort = null; // abort(err) ends the running call's await with err

  // The REPL's conveniences: built-in modules as globals (fs, path, ...).
  for (const name of Module.builtinModules) {
    if (name.startsWith('_') || name.includes('/') || name in globalThis) continue;
    Object.defineProperty(globalThis, name, {
      configurable: true,
      enumerable: false,
      get() {
        const v = require(name);
        Object.defineProperty(globalThis, name, { value: v, writable: true, configurable: true, enumerable: false });
        return v;
      },
      set(v) {
        Object.defineProperty(globalThis, name, { value: v, writable: true, configurable: true, enumerable: true });
      },
    });
  }

  // A listener must exist or SIGINT kills us between calls; breakOnSigint
  // handles it during synchronous code, this during awaits.
  process.on('SIGINT', () => {
    if (abort) abort(interrupted());
  });

  // process.exit ends the call, not the session: it throws, as sys.exit
  // does in Python, and the call's answer carries the status.
  const EXIT = Symbol('vial.exitStatus');
  process.exit = function exit(code) {
    if (code === undefined) code = process.exitCode;
    const n = Number(code === undefined || code === null ? 0 : code);
    const status = Number.isInteger(n) ? n & 255 : 1;
    const e = new Error(`process.exit(${status}) ended the call`);
    e.name = 'ProcessExit';
    e[EXIT] = status;
    throw e;
  };

  // An error thrown by a callback, or a promise rejected with no handler,
  // ends the call that is awaiting with that error, as it would end a
  // script; after its call ended it goes to the next call's stderr (as in
  // the REPL). The session survives either way.
  function uncaught(prefix, e) {
    if (abort) {
      abort(e);
      return;
    }
    if (e && e[EXIT] !== undefined) {
      process.stderr.write(`${prefix}process.exit(${e[EXIT]}) outside a call was ignored\n`);
      return;
    }
    const text = e instanceof Error ? describe(e).stack : util.inspect(e);
    process.stderr.write(`${prefix}${text}\n`);
  }
  process.on('uncaughtException', (e) => uncaught('Uncaught ', e));
  process.on('unhandledRejection', (e) => uncaught('Uncaught (in promise) ', e));

  // Top-level let, const and class become var, so that a later call may
  // declare them again, as a notebook cell being re-run does.
  function relax(code) {
    if (!acorn) return code;
    let ast;
    try {
      ast = acorn.parse(code, { ecmaVersion: 'latest', sourceType: 'script', allowAwaitOutsideFunction: true });
    } catch (e) {
      return code; // let V8 report the syntax error
    }
    const edits = [];
    for (const node of ast.body) {
      if (node.type === 'VariableDeclaration' && node.kind !== 'var') {
        edits.push([node.start, node.start + node.kind.length, 'var']);
      } else if (node.type === 'ClassDeclaration' && node.id) {
        edits.push([node.start, node.start, `var ${node.id.name} = `], [node.end, node.end, ';']);
      }
    }
    for (let i = edits.length - 1; i >= 0; i--) {
      const [a, b, s] = edits[i];
      code = code.slice(0, a) + s + code.slice(b);
    }
    return code;
  }

  function interrupted() {
    const e = new Error('execution was interrupted (SIGINT)');
    e.name = 'Interrupted';
    e.stack = 'Interrupted: execution was interrupted (SIGINT)';
    return e;
  }

  function describe(e, filename) {
    if (!(e instanceof Error) && !(e && typeof e === 'object' && 'stack' in e)) {
      return { name: 'Uncaught', message: util.inspect(e), stack: `Uncaught ${util.inspect(e)}` };
    }
    let name = String(e.name || 'Error');
    let message = String(e.message || '');
    let stack = String(e.stack || `${name}: ${message}`);
    if (e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED') {
      return { name: 'Interrupted', message: 'execution was interrupted (SIGINT)', stack: 'Interrupted: execution was interrupted (SIGINT)' };
    }
    // Drop the driver's and Node's own frames.
    stack = stack
      .split('\n')
      .filter((l) => !(/^\s+at /.test(l) && (l.includes(__filename) || /[( ]node:/.test(l))))
      .join('\n');
    return { name, message, stack };
  }

  async function run(code) {
    cell++;
    const filename = `<cell ${cell}>`;
    globalThis.require = Module.createRequire(path.join(process.cwd(), filename));
    let src = relax(code);
    let isAsync = false;
    if (processTopLevelAwait) {
      try {
        const w = processTopLevelAwait(src);
        if (w !== null) {
          src = w;
          isAsync = true;
        }
      } catch (e) {}
    }
    const res = { hasValue: false };
    try {
      const script = new vm.Script(src, { filename });
      let v = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
      if (isAsync) {
        v = await new Promise((resolve, reject) => {
          abort = reject;
          Promise.resolve(v).then(resolve, reject);
        });
        v = v && v.value;
      }
      if (v !== undefined) {
        res.hasValue = true;
        res.value = cutBytes(util.inspect(v), CAP);
      }
    } catch (e) {
      res.error = describe(e, filename);
      res.error = {
        name: cutBytes(res.error.name, 256),
        message: cutText(res.error.message, ERR_CAP),
        stack: cutText(res.error.stack, ERR_CAP),
      };
      if (res.error.name === 'Interrupted') res.interrupted = true;
      if (e && e[EXIT] !== undefined) {
        res.exitStatus = e[EXIT];
        if (e[EXIT] === 0) delete res.error;
      }
    } finally {
      abort = null;
    }
    return res;
  }

  process.on('message', async (m) => {
    if (m.type === 'init') {
      sentinel = Buffer.from(m.sentinel, 'latin1');
      CAP = m.cap || CAP;
      process.send({ type: 'ready' });
      return;
    }
    if (m.type !== 'exec') return;
    const cpu0 = process.cpuUsage();
    const res = await run(m.code);
    const cpu = process.cpuUsage(cpu0);
    res.cpuNs = (cpu.user + cpu.system) * 1000;
    res.peakRss = process.resourceUsage().maxRSS * 1024;
    res.type = 'result';
    res.id = m.id;
    // One turn of the event loop first, so that the promise rejections
    // the call left unhandled are reported in its own stderr.
    await new Promise((resolve) => setImmediate(resolve));
    // Node queues writes to a full pipe, so the sentinels go through the
    // same streams, after everything the call wrote.
    await Promise.all([process.stdout, process.stderr].map((s) => new Promise((resolve) => {
      try {
        s.write(sentinel, () => resolve());
      } catch (e) {
        resolve();
      }
    })));
    process.send(res);
  });
}
