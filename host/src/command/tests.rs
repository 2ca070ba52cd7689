//! Real processes: exit statuses, signals, timeouts that kill a whole group, output streamed.

use super::*;

fn shell(role: &str, script: &str) -> Spec {
    Spec::new(role, CommandLine::Shell(script.into()))
}

/// Whether process `pid` still runs (a zombie does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command's name in parentheses.
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Waits up to 5 s for `pid` to be gone (a signal is delivered asynchronously).
fn gone(pid: i32) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn pid_in(file: &std::path::Path) -> i32 {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(t) = std::fs::read_to_string(file) {
            if let Ok(p) = t.trim().parse() {
                return p;
            }
        }
        assert!(Instant::now() < until, "no pid in {}", file.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_hook_succeeds_or_says_how_it_failed_with_its_last_line_on_stderr() {
    run(&shell("before command", "echo fine; echo also fine >&2")).unwrap();
    let e = run(&shell(
        "before command",
        "echo first >&2; echo 'no database' >&2; exit 3",
    ))
    .unwrap_err();
    assert_eq!(e.how, How::Exit(3));
    assert_eq!(
        e.to_string(),
        "before command `echo first >&2; echo 'no database' >&2; exit 3` exited with status 3: no database"
    );
    let e = run(&shell("after command", "kill -9 $$")).unwrap_err();
    assert_eq!(e.how, How::Signal(9));
    assert!(
        e.to_string().ends_with("was killed by signal 9 (SIGKILL)"),
        "{e}"
    );
    let e = run(&Spec::new(
        "before command",
        CommandLine::Argv(vec!["/nonexistent/bakfs-test-program".into(), "a b".into()]),
    ))
    .unwrap_err();
    assert!(matches!(e.how, How::NotStarted(_)), "{e:?}");
    assert!(
        e.to_string().starts_with(
            "before command `/nonexistent/bakfs-test-program \"a b\"` could not be started: No such file"
        ),
        "{e}"
    );
}

#[test]
fn variables_are_given_and_stdin_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut s = shell(
        "before command",
        &format!("printf '%s|' \"$ONE\" \"$(cat)\" > {}", out.display()),
    );
    s.env = vec![("ONE".into(), "1 and 1".into())];
    run(&s).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "1 and 1||");
}

#[test]
fn a_hook_past_its_timeout_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild");
    let mut s = shell(
        "before command",
        &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
    );
    s.timeout = Some(Duration::from_secs(1));
    let t = Instant::now();
    let e = run(&s).unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.how, How::TimedOut(Duration::from_secs(1)));
    assert!(
        e.to_string().ends_with("timed out after 1s and was killed"),
        "{e}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(gone(pid_in(&pidfile)), "the grandchild survived");
}

#[test]
fn output_ends_only_when_the_command_exited_with_0() {
    let mut out = spawn_output(&shell("command", "printf 'all of it'")).unwrap();
    let mut got = Vec::new();
    out.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"all of it");
    assert!(out.failure().is_none());

    let mut out = spawn_output(&shell(
        "command",
        "printf 'half'; echo 'disk full' >&2; exit 2",
    ))
    .unwrap();
    let mut got = Vec::new();
    let e = out.read_to_end(&mut got).unwrap_err();
    assert_eq!(got, b"half", "what came before the failure was read");
    assert!(
        e.to_string().contains("exited with status 2: disk full"),
        "{e}"
    );
    assert_eq!(out.failure().unwrap().how, How::Exit(2));
    // Reading again gives the same error, never an end.
    assert!(out.read(&mut [0; 8]).is_err());

    let mut out = spawn_output(&shell("command", "printf 'some'; kill -TERM $$")).unwrap();
    assert!(out.read_to_end(&mut Vec::new()).is_err());
    assert_eq!(out.failure().unwrap().how, How::Signal(15));
}

#[test]
fn output_past_its_timeout_ends_in_an_error_even_if_a_child_holds_it_open() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild");
    // The grandchild keeps standard output open: reading ends at the timeout, not at EOF.
    let mut s = shell(
        "command",
        &format!(
            "printf start; sleep 60 & echo $! > {}; wait",
            pidfile.display()
        ),
    );
    s.timeout = Some(Duration::from_secs(1));
    let t = Instant::now();
    let mut out = spawn_output(&s).unwrap();
    let mut got = Vec::new();
    let e = out.read_to_end(&mut got).unwrap_err();
    let took = t.elapsed();
    assert_eq!(got, b"start");
    assert!(e.to_string().contains("timed out after 1s"), "{e}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(gone(pid_in(&pidfile)), "the grandchild survived");

    // A process that left the group is out of reach, but reading still ends in time.
    let mut s = shell(
        "command",
        &format!(
            "setsid sleep 60 & echo $! > {}; sleep 60",
            pidfile.display()
        ),
    );
    s.timeout = Some(Duration::from_secs(1));
    std::fs::remove_file(&pidfile).unwrap();
    let t = Instant::now();
    let mut out = spawn_output(&s).unwrap();
    assert!(out.read_to_end(&mut Vec::new()).is_err());
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let escaped = pid_in(&pidfile);
    let _ = nix::sys::signal::kill(Pid::from_raw(escaped), Signal::SIGKILL);
}

#[test]
fn output_dropped_before_its_end_kills_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let mut out = spawn_output(&shell(
        "command",
        &format!("echo $$ > {}; while :; do echo y; done", pidfile.display()),
    ))
    .unwrap();
    let mut some = [0u8; 10];
    out.read_exact(&mut some).unwrap();
    let pid = pid_in(&pidfile);
    drop(out);
    assert!(gone(pid));
}
