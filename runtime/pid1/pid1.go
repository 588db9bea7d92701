// Package pid1 is the init process of a context's sandbox: a minimal pid 1
// in front of the language driver that reaps orphaned processes.
//
// Why it exists: the kernel re-parents an orphaned process to pid 1, and
// none of the drivers can reap such orphans safely. Node cannot wait for a
// process it did not start; Python could, but waitpid(-1) in the process
// that runs the user's code steals the exit status of children that code
// is about to wait for. An orphan left unreaped is a zombie holding a pid
// until the sandbox's pids limit is reached and nothing can fork. Between
// the user's code and this init there is always the driver, so everything
// this init reaps is an orphan.
//
// The init is the vial executable itself, started with Arg as its first
// argument (runtime.WriteDrivers copies it next to the drivers and
// runtime.InitCommand builds the argv). The dispatch happens in this
// package's init function rather than in main, so that a context starts
// without paying for the initialisation of every package vial links (a
// JSON Schema compiler alone takes about 10 ms and 2 MB): the Go
// specification initialises, at each step, the first package in import
// path order whose imports are done, and this package imports only a few
// early ones. Any program that links this package (every program that
// links vial's runtime package) therefore handles Arg, tests included.
package pid1

import (
	"errors"
	"os"
	"os/signal"
	goruntime "runtime"
	"strings"
	"syscall"
)

// Arg is the first argument that makes a program linking this package run
// as the sandbox's init: `PROGRAM Arg -- DRIVER ARGS...`.
const Arg = "__vial-init"

func init() {
	if len(os.Args) > 1 && os.Args[1] == Arg {
		os.Exit(Main(os.Args[2:]))
	}
}

// forwarded are the signals the init passes on to the driver. SIGINT is
// how vial interrupts a call (the runtime's kill reaches only pid 1);
// SIGTERM and the rest keep the meaning they had when the driver itself
// was pid 1.
var forwarded = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH,
}

// Main runs argv (after an optional "--") as the leader of a new session,
// passes on the signals vial sends, reaps every child the kernel hands it,
// and returns the driver's exit status (128+n if signal n killed it) as
// soon as the driver has exited. The caller exits with it; as pid 1 that
// makes the kernel kill whatever is left in the sandbox.
//
// When it is not pid 1 (tests on the host) it makes itself a child
// subreaper, so that it gets the same orphans.
func Main(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		say("no command to run")
		return 2
	}
	// Threads count against the sandbox's pids limit, and one is plenty
	// for waiting.
	goruntime.GOMAXPROCS(1)
	if os.Getpid() != 1 {
		if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
			say("becoming a subreaper: " + e.Error())
		}
	}
	// Registered before the driver starts: nothing it does is missed.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGCHLD}, forwarded...)...)

	path, err := lookPath(args[0])
	if err != nil {
		say(args[0] + ": " + err.Error())
		return 127
	}
	pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		// A session and process group of its own, as the driver had when
		// it was pid 1 (the runtimes start pid 1 with setsid): the drivers
		// signal their process group to interrupt the user's
		// subprocesses.
		//
		// On a host (tests), where nothing else would end the driver
		// with the init, the init's death kills it.
		Sys: &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		say("starting " + args[0] + ": " + err.Error())
		return 127
	}
	// The protocol pipes are the driver's alone: vial sees the end of its
	// stdout when the driver is gone, whatever the init is doing. fd 2
	// stays for the init's own messages (vial logs the driver's stderr).
	if null, err := syscall.Open(os.DevNull, syscall.O_RDWR, 0); err == nil {
		_ = syscall.Dup3(null, 0, 0)
		_ = syscall.Dup3(null, 1, 0)
		if null > 2 {
			syscall.Close(null)
		}
	}
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			// ESRCH: the driver is gone and its SIGCHLD is on the way.
			_ = syscall.Kill(pid, sig.(syscall.Signal))
			continue
		}
		if status, done := reap(pid); done {
			return status
		}
	}
	return 1 // not reached: sigs is never closed
}

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>.
const prSetChildSubreaper = 36

// reap collects every exited child without blocking. It reports the
// driver's exit status once the driver (pid) is among them.
func reap(pid int) (status int, done bool) {
	for {
		var ws syscall.WaitStatus
		p, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || p <= 0 {
			return 0, false
		}
		if p != pid {
			continue
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus(), true
		case ws.Signaled():
			return 128 + int(ws.Signal()), true
		}
		return 1, true
	}
}

// lookPath finds an executable on PATH as a shell does (os/exec would do
// the same, with more packages to initialise first).
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path, ok := os.LookupEnv("PATH")
	if !ok {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("executable file not found in $PATH")
}

func say(msg string) {
	os.Stderr.WriteString("vial init: " + msg + "\n")
}
