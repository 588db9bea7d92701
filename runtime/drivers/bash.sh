# vial's bash driver: a persistent bash session behind a pipe.
#
# Runs as the sandbox's init process; needs bash 4.4+ and GNU coreutils
# (head -c must not read past its count), nothing else. vial writes
# requests on stdin and reads answers on stdout, framed as described in
# drivers/README.md.
#
# Two processes: this one (the supervisor, pid 1) starts the session in
# its own process group and turns the SIGINT vial sends it into a SIGINT to
# that whole group, because a shell waiting for a foreground command cannot
# run a trap until the command ends. It also reaps orphaned zombies (bash
# reaps any child it is sent) and ends when the session ends.

if [[ ${1-} != --session ]]; then
	set -m # job control: the session gets a process group of its own
	exec 3<&0
	bash "${BASH_SOURCE[0]}" --session <&3 3<&- &
	exec 3<&-
	__vial_child=$!
	trap 'kill -INT -- "-$__vial_child" 2>/dev/null' INT
	trap 'kill -KILL -- "-$__vial_child" 2>/dev/null; exit 143' TERM
	while :; do
		wait "$__vial_child"
		__vial_status=$?
		kill -0 "$__vial_child" 2>/dev/null || exit "$__vial_status"
	done
fi

# ---- the session ----------------------------------------------------------
#
# fd 3: requests, fd 4: answers (both closed for the user's code, so that
# its subprocesses never hold them); fd 6: a FIFO the output capturers
# report on. Between calls fd 1 is /dev/null and fd 2 the driver's own
# stderr (vial logs it).

exec 3<&0 4>&1 0</dev/null 1>/dev/null
set +m
set -o functrace # the interrupt's DEBUG trap must reach into functions
shopt -s expand_aliases
__vial_self=${BASH_SOURCE[0]}
__vial_cap=${VIAL_OUTPUT_CAP:-1048576}
((__vial_cap >= 1024)) || __vial_cap=1024
__vial_d=$(mktemp -d "${TMPDIR:-/tmp}/vial-bash.XXXXXX") || builtin exit 70
mkfifo "$__vial_d/done" || builtin exit 70
exec 6<>"$__vial_d/done"
unset VIAL_OUTPUT_CAP

# capture NAME FILE: copies stdin to FILE up to the cap, drains the rest
# (so writers never block) and reports "NAME TRUNCATED" on fd 6. The cap
# is a file size limit (RLIMIT_FSIZE, whole KiB) on cat: cat writes each
# read at once, so what a call printed is in FILE even while a background
# job keeps the pipe, and so this capturer, alive. SIGINT is ignored here
# and in cat: an interrupt is for the user's command, not for its output.
# Costs one fork and one exec per stream and call; the rest of a call's
# bookkeeping uses builtins only.
__vial_capture() {
	trap '' INT XFSZ
	exec 2>/dev/null
	ulimit -f "$((__vial_cap / 1024))"
	local more=0
	if ! cat >"$2"; then
		more=1
		cat >/dev/null
	fi
	echo "$1 $more" >&6
}

# emit NAME FILE: FILE's contents as a wire field.
__vial_emit() {
	local LC_ALL=C v n
	if [[ ! -s $2 ]]; then
		printf '%s 0\n\n' "$1" >&4
	elif ! IFS= read -r -d '' v <"$2"; then
		# No NUL byte: v holds the whole file (read stops at end of file).
		printf '%s %d\n%s\n' "$1" "${#v}" "$v" >&4
	else
		n=$(wc -c <"$2")
		((n > __vial_cap)) && n=$__vial_cap
		printf '%s %d\n' "$1" "$n" >&4
		head -c "$n" "$2" >&4
		printf '\n' >&4
	fi
}

# field NAME VALUE: one wire field with a value held in a variable.
__vial_field() {
	local LC_ALL=C
	printf '%s %d\n%s\n' "$1" "${#2}" "$2" >&4
}

# cpu_ns: user+system time of the session and its waited-for children.
__vial_cpu_ns() {
	local LC_ALL=C line total=0 m s f
	times >"$__vial_d/times"
	while read -r line; do
		for t in $line; do
			[[ $t =~ ^([0-9]+)m([0-9]+)[.,]([0-9]+)s$ ]] || continue
			m=${BASH_REMATCH[1]} s=${BASH_REMATCH[2]} f=${BASH_REMATCH[3]}000000000
			total=$((total + (10#$m * 60 + 10#$s) * 1000000000 + 10#${f:0:9}))
		done
	done <"$__vial_d/times"
	__vial_cpu=$total
}

# readmsg: reads one request; the code goes to $__vial_d/code.
__vial_readmsg() {
	local magic name n rest
	IFS=' ' read -r magic __vial_kind __vial_id <&3 || return 1
	if [[ $magic != vial1 ]]; then
		echo "vial bash driver: bad request header" >&2
		return 1
	fi
	: >"$__vial_d/code"
	while IFS=' ' read -r name n <&3; do
		[[ $name == end ]] && return 0
		[[ $n =~ ^[0-9]+$ ]] || return 1
		if [[ $name == code ]]; then
			head -c "$n" <&3 >"$__vial_d/code"
		else
			head -c "$n" <&3 >/dev/null
		fi
		IFS= read -r rest <&3
	done
	return 1
}

# The user's `exit` ends the call, not the session: inside code that is
# being sourced, return does that. (`builtin exit` still ends it.)
alias exit=return

# At SIGINT, if the user's code is running, return from it; the DEBUG trap
# keeps returning from each enclosing function until the driver's own code
# is reached again.
__vial_unwind='[[ -n $__vial_intr && ${BASH_SOURCE[0]} != "$__vial_self" ]] && return 130'
trap '__vial_intr=1; if [[ ${BASH_SOURCE[0]} != "$__vial_self" ]]; then trap "$__vial_unwind" DEBUG; return 130; fi' INT
trap 'rm -rf "$__vial_d"' EXIT

printf 'vial1 ready 0\nlanguage 4\nbash\nversion %d\n%s\nend\n' "${#BASH_VERSION}" "$BASH_VERSION" >&4

while __vial_readmsg; do
	if [[ $__vial_kind != exec ]]; then
		printf 'vial1 result %s\n' "$__vial_id" >&4
		__vial_field error_name ProtocolError
		__vial_field error_message "unknown request $__vial_kind"
		printf 'end\n' >&4
		continue
	fi
	# Each call gets its own files: a capturer kept alive by a background
	# job may still be writing the previous ones. They are removed in
	# batches, one rm per 64 calls.
	if ((__vial_id % 64 == 0)); then
		rm -f "$__vial_d"/out.* "$__vial_d"/err.*
	fi
	__vial_out=$__vial_d/out.$__vial_id __vial_err=$__vial_d/err.$__vial_id
	__vial_intr=
	__vial_cpu_ns
	__vial_cpu0=$__vial_cpu
	__vial_status=0
	source "$__vial_d/code" > >(__vial_capture out "$__vial_out") 2> >(__vial_capture err "$__vial_err") 3<&- 4>&- 6>&-
	__vial_status=$?
	trap - DEBUG
	# Wait for both capturers; a background job still holding the pipe
	# keeps its capturer alive, so after a moment take what there is.
	__vial_trunc_out=0 __vial_trunc_err=0 __vial_got=0
	while ((__vial_got < 2)) && IFS=' ' read -r -t 0.25 __vial_s __vial_more <&6; do
		((__vial_got++))
		printf -v "__vial_trunc_$__vial_s" %s "$__vial_more"
	done
	__vial_cpu_ns
	printf 'vial1 result %s\n' "$__vial_id" >&4
	__vial_field exit_status "$__vial_status"
	__vial_field cpu_ns "$((__vial_cpu - __vial_cpu0))"
	if [[ -n $__vial_intr ]]; then __vial_field interrupted 1; fi
	if ((__vial_trunc_out)); then __vial_field stdout_truncated 1; fi
	if ((__vial_trunc_err)); then __vial_field stderr_truncated 1; fi
	__vial_emit stdout "$__vial_out"
	__vial_emit stderr "$__vial_err"
	printf 'end\n' >&4
done
