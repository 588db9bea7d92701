# vial's bash driver: a persistent bash session behind a pipe.
#
# Runs under vial's init (pid 1, which passes vial's signals on and reaps
# orphans); needs bash 4.4+, GNU coreutils (head -c must not read past its
# count) and grep, nothing else. vial writes requests on stdin and reads
# answers on stdout, framed as described in drivers/README.md.
#
# Two processes: this one (the supervisor) starts the session in its own
# process group and turns the SIGINT vial sends it into a SIGINT to that
# whole group, because a shell waiting for a foreground command cannot run
# a trap until the command ends. It ends when the session ends.

if [[ ${1-} != --session ]]; then
	__vial_d=$(mktemp -d "${TMPDIR:-/tmp}/vial-bash.XXXXXX") || exit 70
	set -m # job control: the session gets a process group of its own
	exec 3<&0
	bash "${BASH_SOURCE[0]}" --session "$__vial_d" <&3 3<&- &
	exec 3<&-
	__vial_child=$!
	trap 'kill -INT -- "-$__vial_child" 2>/dev/null' INT
	trap 'kill -KILL -- "-$__vial_child" 2>/dev/null; rm -rf "$__vial_d"; exit 143' TERM
	while :; do
		wait "$__vial_child"
		__vial_status=$?
		kill -0 "$__vial_child" 2>/dev/null && continue
		rm -rf "$__vial_d"
		exit "$__vial_status"
	done
fi

# ---- the session ----------------------------------------------------------
#
# fd 3: requests, fd 4: answers (both closed for the user's code, so that
# its subprocesses never hold them); fd 5: a FIFO for the output of
# `times`; fd 6: a FIFO the output capturers report on; fds 7 and 8:
# during a call, the write ends of its stdout and stderr pipes. Between
# calls fd 1 is /dev/null and fd 2 the driver's own stderr (vial logs it).
# All of them are closed for the user's code.
#
# Nothing a call does needs free space in $TMPDIR, which the user's code
# can fill: everything the driver writes there is made when the session
# starts (two FIFOs, and two slot files, as large as the output cap, into
# which the capturers copy each call's output over the last one's); the
# code comes in a variable and is sourced from a pipe.
#
# The user's code runs in this shell, with its own shell options (set -e,
# set -u, shopt ...), which are swapped for the driver's around each call.
# The driver calls builtins with `builtin` and programs with `command` and
# its own PATH, so the user's functions and PATH do not change it.

exec 3<&0 4>&1 0</dev/null 1>/dev/null
set +m
# The unwinding DEBUG trap and the errexit ERR trap must reach into
# functions (and the user keeps both options: they are forced on).
set -o functrace -o errtrace
shopt -s expand_aliases
__vial_self=${BASH_SOURCE[0]}
__vial_pid=$BASHPID
__vial_path=${PATH:-/usr/local/bin:/usr/bin:/bin}
__vial_cap=${VIAL_OUTPUT_CAP:-1048576}
((__vial_cap >= 1024)) || __vial_cap=1024
__vial_d=$2 # made, and removed, by the supervisor
__vial_sup=$PPID
mkfifo "$__vial_d/done" "$__vial_d/times" || builtin exit 70
exec 5<>"$__vial_d/times" 6<>"$__vial_d/done"
unset VIAL_OUTPUT_CAP VIAL_IMAGE_BYTES
# The capturers' slots: the cap, in whole KiB, and room for the end mark
# (their file size limit is the same, so the cap still cuts). Filled with
# the builtin printf: no process to start.
__vial_slot=$(((__vial_cap / 1024 + 2) * 1024))
__vial_out=$__vial_d/out __vial_err=$__vial_d/err
{ builtin printf '%*s' "$__vial_slot" '' >"$__vial_out" && builtin printf '%*s' "$__vial_slot" '' >"$__vial_err"; } || builtin exit 70
# Ends a call's output in its pipes (with the call's id, and a NUL after
# it); never in a user's output by chance.
__vial_rand=$RANDOM$RANDOM$RANDOM$RANDOM$RANDOM
__vial_mark=
# The options the driver runs with, and the user's (the same at first).
__vial_opts=$SHELLOPTS __vial_shopts=$BASHOPTS
__vial_uopts=$SHELLOPTS __vial_ushopts=$BASHOPTS

# switch FROM FROM_SHOPT TO TO_SHOPT: changes the shell options (colon
# lists as in SHELLOPTS and BASHOPTS) from one set to the other.
# Tracing (xtrace, verbose) goes on last, so the switch is not traced.
__vial_switch() {
	local IFS=: o trace=
	for o in $1; do [[ :$3: == *:"$o":* ]] || builtin set +o "$o"; done
	for o in $2; do [[ :$4: == *:"$o":* ]] || builtin shopt -u "$o" 2>/dev/null; done
	for o in $4; do [[ :$2: == *:"$o":* ]] || builtin shopt -s "$o" 2>/dev/null; done
	for o in $3; do
		if [[ $o == xtrace || $o == verbose ]]; then
			trace+=" $o"
		elif [[ :$1: != *:"$o":* ]]; then
			builtin set -o "$o"
		fi
	done
	for o in ${trace//' '/:}; do
		[[ -n $o && :$1: != *:"$o":* ]] && builtin set -o "$o"
	done
	return 0
}

# capture ID NAME SLOT: copies stdin into SLOT, from its start, over what
# the last call left there, and drains the rest (so writers never block).
# It reports on fd 6 "ID NAME pid PID" when the copy starts, and "ID NAME
# TRUNCATED" when the copy reached the end of its input (0) or the cap
# (1). The cap is a file size limit (RLIMIT_FSIZE, whole KiB, with room
# for the end mark) on cat: cat writes each read at once, so what a call
# printed is in SLOT even while a background job keeps the pipe, and so
# the copy, going; the session then stops the copy (by PID) once it has
# the call's output, and this capturer drains what the job writes later
# to /dev/null. SIGINT is ignored here and in cat: an interrupt is for
# the user's command, not for its output. Costs two forks and one exec
# per stream and call; the rest of a call's bookkeeping uses builtins
# only, except when a background job holds a pipe (a grep per look for the
# end mark).
__vial_capture() {
	builtin trap '' INT XFSZ
	exec 2>/dev/null 3<&- 4>&- 5>&- 7>&- 8>&-
	builtin ulimit -f "$((__vial_cap / 1024 + 2))"
	PATH=$__vial_path command cat <&0 1<>"$3" &
	builtin echo "$1 $2 pid $!" >&6
	builtin wait "$!"
	case $? in
	0) builtin echo "$1 $2 0" >&6 ;;
	137) ;; # stopped by the session, which has the output
	*) builtin echo "$1 $2 1" >&6 ;;
	esac
	PATH=$__vial_path command cat >/dev/null
}

# marked SLOT: whether SLOT holds the call's end mark.
__vial_marked() {
	PATH=$__vial_path command grep -qaF -- "$__vial_mark" "$1" 2>/dev/null
}

# emit NAME SLOT TRUNCATED [LENGTH]: the call's output in SLOT as a wire
# field, and NAME_truncated if it was cut. The output ends at the call's
# end mark; without one, at the cap if the copy was cut there, or else
# after LENGTH bytes (how far a copy that was stopped had got).
__vial_emit() {
	local LC_ALL=C v n tr=0 m=${#__vial_mark}
	[[ $3 == 1 ]] && tr=1
	# Up to the first NUL: the NUL after the mark, unless the output has
	# NULs of its own (or no mark).
	IFS= builtin read -r -d '' v <"$2"
	if ((${#v} >= m)) && [[ ${v: -m} == "$__vial_mark" ]]; then
		v=${v:0:${#v}-m}
		if ((${#v} > __vial_cap)); then
			v=${v:0:__vial_cap} tr=1
		fi
		builtin printf '%s %d\n%s\n' "$1" "${#v}" "$v" >&4
	else
		n=$(PATH=$__vial_path command grep -aboF -m1 -- "$__vial_mark" "$2")
		if [[ -n $n ]]; then
			n=${n%%:*}
		elif ((tr)); then
			n=$__vial_cap
		else
			n=${4:-0}
		fi
		((n > __vial_cap)) && n=$__vial_cap tr=1
		builtin printf '%s %d\n' "$1" "$n" >&4
		PATH=$__vial_path command head -c "$n" "$2" >&4
		builtin printf '\n' >&4
	fi
	if ((tr)); then
		builtin printf '%s_truncated 1\n1\n' "$1" >&4
	fi
}

# stop NAME: stops the copy of NAME's stream if it is still going (a
# background job holds the pipe): the slot is the next call's. Without
# the end mark in the slot, what it copied so far is the output; its
# length is cat's file offset, read first.
__vial_stop() {
	local got=__vial_got_$1 pid=__vial_cat_$1 line
	[[ ${!got} == [01] || -z ${!pid} ]] && return
	if [[ -z ${!got} ]]; then
		while IFS= builtin read -r line; do
			if [[ $line == pos:* ]]; then
				builtin printf -v "__vial_len_$1" %d "${line//[!0-9]/}"
				break
			fi
		done <"/proc/${!pid}/fdinfo/1" 2>/dev/null
	fi
	builtin kill -KILL "${!pid}" 2>/dev/null
}

# field NAME VALUE: one wire field with a value held in a variable.
__vial_field() {
	local LC_ALL=C
	builtin printf '%s %d\n%s\n' "$1" "${#2}" "$2" >&4
}

# cpu_ns: user+system time of the session and its waited-for children,
# read back from `times` through the FIFO on fd 5 (two lines).
__vial_cpu_ns() {
	local LC_ALL=C IFS=$' \t\n' line total=0 m s f t i
	builtin times >&5
	for i in 1 2; do
		builtin read -r line <&5
		for t in $line; do
			[[ $t =~ ^([0-9]+)m([0-9]+)[.,]([0-9]+)s$ ]] || continue
			m=${BASH_REMATCH[1]} s=${BASH_REMATCH[2]} f=${BASH_REMATCH[3]}000000000
			total=$((total + (10#$m * 60 + 10#$s) * 1000000000 + 10#${f:0:9}))
		done
	done
	__vial_cpu=$total
}

# readmsg: reads one request; the code goes to __vial_code (through a
# pipe: a command substitution, with an x after it so that trailing
# newlines are kept).
__vial_readmsg() {
	local magic name n rest
	IFS=' ' builtin read -r magic __vial_kind __vial_id <&3 || return 1
	if [[ $magic != vial1 ]]; then
		builtin echo "vial bash driver: bad request header" >&2
		return 1
	fi
	__vial_code=
	while IFS=' ' builtin read -r name n <&3; do
		[[ $name == end ]] && return 0
		[[ $n =~ ^[0-9]+$ ]] || return 1
		if [[ $name == code ]]; then
			__vial_code=$(PATH=$__vial_path command head -c "$n" <&3; builtin printf x)
			__vial_code=${__vial_code%x}
		else
			PATH=$__vial_path command head -c "$n" <&3 >/dev/null
		fi
		IFS= builtin read -r rest <&3
	done
	return 1
}

# The user's code is sourced, so `return` ends it from its top level; to
# end it from inside functions as well, __vial_stop holds the status to
# end with and the DEBUG trap returns from each enclosing function until
# the driver's own code is reached again.
__vial_unwind='[[ -n $__vial_stop && ${BASH_SOURCE[0]} != "$__vial_self" ]] && return $__vial_stop'

# The user's `exit` ends the call, not the session, with its status. In a
# subshell it is the real exit. (`builtin exit` ends the session.)
exit() {
	local s=$? n
	if [[ $BASHPID != "$__vial_pid" ]]; then
		builtin exit "$@"
	fi
	if (($#)); then
		n=${1#[-+]}
		if [[ $n =~ ^[0-9]+$ && ${#n} -lt 19 ]]; then
			s=$((10#$n))
			[[ $1 == -* ]] && s=$((-s))
			s=$((s & 255))
		else
			builtin echo "bash: exit: $1: numeric argument required" >&2
			s=2
		fi
	fi
	__vial_stop=$s
	builtin trap "$__vial_unwind" DEBUG
	return "$s"
}

# At SIGINT, if the user's code is running, return from it, unwinding.
__vial_inttrap='__vial_intr=1; if [[ ${BASH_SOURCE[0]} != "$__vial_self" ]]; then __vial_stop=130; trap "$__vial_unwind" DEBUG; return 130; fi'
# Under the user's set -e, a failing command ends the call, not the
# session: this trap runs before errexit would exit the shell, turns
# errexit off (it is back for the next call) and unwinds. It acts only in
# the session itself; subshells exit as set -e says.
__vial_errtrap='__vial_s=$?; if [[ $- == *e* && $BASHPID == "$__vial_pid" ]]; then builtin set +e; __vial_errexit=1; if [[ ${BASH_SOURCE[0]} != "$__vial_self" ]]; then __vial_stop=$__vial_s; trap "$__vial_unwind" DEBUG; return $__vial_s; fi; fi'
builtin trap "$__vial_inttrap" INT
builtin trap "$__vial_errtrap" ERR
# A session that ends in the middle of a call (builtin exit, exec, an
# error the traps cannot catch) still answers that call, saying so.
builtin trap __vial_atexit EXIT

# finish [exited]: after the user's code returned and its output was
# marked, waits for the output and answers the call.
__vial_finish() {
	# Wait for both capturers; a background job still holding a pipe keeps
	# its capturer alive, and then the output is complete once the end mark
	# is in the slot. At most 250 ms (50 rounds where bash has no
	# EPOCHREALTIME), in case neither ever happens.
	local i id s more now end= line part= rc
	__vial_got_out= __vial_got_err= __vial_cat_out= __vial_cat_err= __vial_len_out= __vial_len_err=
	now=${EPOCHREALTIME/[.,]/}
	[[ -n $now ]] && end=$((10#$now + 250000))
	for ((i = 0; ; i++)); do
		if [[ -n $end ]]; then
			now=${EPOCHREALTIME/[.,]/}
			((10#$now < end)) || break
		else
			((i < 50)) || break
		fi
		# A read that times out in the middle of a line (each byte is a
		# system call, and under gVisor or on a loaded host 1 ms is not
		# always enough for a whole line) keeps what it read: the rest
		# comes in the next read, so the part is kept until the newline.
		while :; do
			IFS= builtin read -r -t 0.001 line <&6
			rc=$?
			if ((rc > 128)); then
				part+=$line
				break
			fi
			((rc == 0)) || break
			line=$part$line part=
			id=${line%% *} line=${line#* }
			s=${line%% *} more=${line#* }
			[[ $id == "$__vial_id" && ($s == out || $s == err) ]] || continue
			if [[ $more == pid\ * ]]; then
				builtin printf -v "__vial_cat_$s" %s "${more#pid }"
			else
				builtin printf -v "__vial_got_$s" %s "$more"
			fi
		done
		[[ -n $__vial_got_out && -n $__vial_got_err ]] && break
		if ((i >= 2)); then
			# m: marked, with the copy still going.
			[[ -n $__vial_got_out ]] || ! __vial_marked "$__vial_out" || __vial_got_out=m
			[[ -n $__vial_got_err ]] || ! __vial_marked "$__vial_err" || __vial_got_err=m
		fi
	done
	__vial_stop out
	__vial_stop err
	__vial_cpu_ns
	builtin printf 'vial1 result %s\n' "$__vial_id" >&4
	__vial_field exit_status "$__vial_status"
	__vial_field cpu_ns "$((__vial_cpu - __vial_cpu0))"
	if [[ -n $__vial_intr ]]; then __vial_field interrupted 1; fi
	if [[ -n $1 ]]; then __vial_field exited 1; fi
	__vial_emit stdout "$__vial_out" "$__vial_got_out" "$__vial_len_out"
	__vial_emit stderr "$__vial_err" "$__vial_got_err" "$__vial_len_err"
	builtin printf 'end\n' >&4
}

# saveopts [SHELLOPTS]: records the user's options (SHELLOPTS as they
# were, if given) and puts the driver's back.
__vial_saveopts() {
	__vial_uopts=${1:-$SHELLOPTS} __vial_ushopts=$BASHOPTS
	if [[ -n $__vial_errexit ]]; then
		__vial_uopts+=:errexit
	fi
	if [[ $__vial_uopts != "$__vial_opts" || $__vial_ushopts != "$__vial_shopts" ]]; then
		__vial_switch "$__vial_uopts" "$__vial_ushopts" "$__vial_opts" "$__vial_shopts"
	fi
}

# atexit: when the session ends in the middle of a call, answers it,
# marked as the session's last. If the call's redirections are still in
# force, fd 4 is closed: it is opened again from the supervisor's stdout
# (the same pipe), which needs no free space anywhere.
__vial_atexit() {
	__vial_status=$? __vial_uopts=$SHELLOPTS
	builtin set +xv
	if [[ -n $__vial_incall && $BASHPID == "$__vial_pid" ]]; then
		__vial_incall=
		__vial_saveopts "$__vial_uopts"
		builtin trap - DEBUG ERR
		# The call's pipes are fds 7 and 8 if bash undid the call's
		# redirections (it does on the way out of set -e), else fds 1 and
		# 2: end and close them.
		if { : >&7; } 2>/dev/null; then
			builtin printf '%s\0' "$__vial_mark" >&7
			builtin printf '%s\0' "$__vial_mark" >&8
		else
			builtin printf '%s\0' "$__vial_mark" 2>/dev/null
			builtin printf '%s\0' "$__vial_mark" >&2 2>/dev/null
		fi
		exec 1>/dev/null 2>/dev/null 7>&- 8>&-
		{ : >&4; } 2>/dev/null || exec 4>"/proc/$__vial_sup/fd/1" || return
		{ : >&5; } 2>/dev/null || exec 5<>"$__vial_d/times"
		{ : >&6; } 2>/dev/null || exec 6<>"$__vial_d/done"
		__vial_finish exited
	fi
}

builtin printf 'vial1 ready 0\nlanguage 4\nbash\nversion %d\n%s\nend\n' "${#BASH_VERSION}" "$BASH_VERSION" >&4

while __vial_readmsg; do
	if [[ $__vial_kind == ping ]]; then
		# A health check: answered at once, the session untouched.
		builtin printf 'vial1 pong %s\nend\n' "$__vial_id" >&4
		continue
	fi
	if [[ $__vial_kind != exec ]]; then
		builtin printf 'vial1 result %s\n' "$__vial_id" >&4
		__vial_field error_name ProtocolError
		__vial_field error_message "unknown request $__vial_kind"
		builtin printf 'end\n' >&4
		continue
	fi
	__vial_mark=$'\x1e'"vial-end-$__vial_rand-$__vial_id"$'\x1e'
	# Each call gets its own pipes; a capturer kept alive by a background
	# job drains the previous ones (its copy into the slot was stopped).
	# The capturers are not the session's children (the process
	# substitutions start them in the background and exit), so that the
	# user's bare `wait` does not wait for them.
	exec 7> >(exec 9<&0; __vial_capture "$__vial_id" out "$__vial_out" <&9 9<&- &)
	exec 8> >(exec 9<&0; __vial_capture "$__vial_id" err "$__vial_err" <&9 9<&- &)
	__vial_intr= __vial_stop= __vial_errexit=
	__vial_cpu_ns
	__vial_cpu0=$__vial_cpu
	__vial_status=0
	# The user's traps for INT, ERR and EXIT last one call; the driver's
	# are back for the next.
	builtin trap "$__vial_inttrap" INT
	builtin trap "$__vial_errtrap" ERR
	builtin trap __vial_atexit EXIT
	__vial_incall=1
	if [[ $__vial_uopts != "$__vial_opts" || $__vial_ushopts != "$__vial_shopts" ]]; then
		__vial_switch "$__vial_opts" "$__vial_shopts" "$__vial_uopts:errtrace:functrace" "$__vial_ushopts"
	fi
	builtin source <(builtin printf '%s' "$__vial_code") >&7 2>&8 3<&- 4>&- 5>&- 6>&- 7>&- 8>&-
	__vial_status=$? __vial_uopts=$SHELLOPTS
	builtin set +xv # the rest is the driver's, not to be traced
	__vial_incall=
	__vial_saveopts "$__vial_uopts"
	builtin trap - DEBUG
	builtin printf '%s\0' "$__vial_mark" >&7
	builtin printf '%s\0' "$__vial_mark" >&8
	exec 7>&- 8>&-
	__vial_finish
done
