//! Heartbeats against a real HTTP server on 127.0.0.1 that the tests run: up, down, slow, and
//! answering errors.

use std::net::TcpListener;

use bakfs_e2e::monitor_server::{server, Answer};

use super::*;

fn ping(url: &str, kind: Kind, event: Event, time_ns: i64) -> Ping {
    Ping {
        target: Target {
            kind,
            url: url.to_string(),
        },
        event,
        subject: "etc".into(),
        run_id: run_id(),
        host: "node-1".into(),
        time_ns,
        message: "backed up /etc\n3 files".into(),
    }
}

const NOW: i64 = 2_000_000_000_000_000_000;

#[test]
fn each_kind_speaks_its_monitors_convention() {
    let srv = server();
    let d = tempfile::tempdir().unwrap();
    let out = Outbox::new(d.path(), TIMEOUT);
    let hc = format!("{}/ping/abc", srv.url);
    let start = ping(&hc, Kind::Healthchecks, Event::Start, NOW);
    let rid = start.run_id.clone();
    out.push(&[
        start,
        Ping {
            run_id: rid.clone(),
            ..ping(&hc, Kind::Healthchecks, Event::Failure(13), NOW)
        },
        ping(
            &format!("{}/api/push/tok", srv.url),
            Kind::UptimeKuma,
            Event::Start,
            NOW,
        ),
        ping(
            &format!("{}/api/push/tok", srv.url),
            Kind::UptimeKuma,
            Event::Success,
            NOW,
        ),
        ping(
            &format!("{}/topic", srv.url),
            Kind::Ntfy,
            Event::Failure(1),
            NOW,
        ),
        ping(
            &format!("{}/hook", srv.url),
            Kind::Webhook,
            Event::Success,
            NOW,
        ),
    ])
    .unwrap();
    let (sent, errors) = out.flush(NOW).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(sent, 6);
    let seen = srv.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "Uptime Kuma has no start: {seen:#?}");
    assert_eq!(seen[0].target, format!("/ping/abc/start?rid={rid}"));
    assert_eq!(seen[1].target, format!("/ping/abc/13?rid={rid}"));
    assert_eq!(seen[1].body, "backed up /etc\n3 files");
    assert_eq!(seen[2].method, "GET");
    assert_eq!(
        seen[2].target,
        "/api/push/tok?status=up&msg=etc%3A%203%20files"
    );
    assert_eq!(seen[3].header("Priority"), Some("high"));
    assert_eq!(
        seen[3].header("Title"),
        Some("bakfs: etc failed on node-1 (exit 1)")
    );
    let j: serde_json::Value = serde_json::from_str(&seen[4].body).unwrap();
    assert_eq!(j["event"], "success");
    assert_eq!(j["subject"], "etc");
    assert_eq!(j["exit_status"], 0);
    // Sent pings leave the outbox.
    assert_eq!(std::fs::read_to_string(d.path().join(OUTBOX)).unwrap(), "");
}

#[test]
fn a_monitor_that_is_down_or_failing_keeps_its_pings_in_order_for_later() {
    let srv = server();
    let d = tempfile::tempdir().unwrap();
    let out = Outbox::new(d.path(), TIMEOUT);
    // Nobody listens on this port (bound, then closed).
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let first = ping(&down, Kind::Webhook, Event::Start, NOW);
    let second = ping(&down, Kind::Webhook, Event::Success, NOW);
    let other = ping(&srv.url, Kind::Webhook, Event::Success, NOW);
    out.push(&[first.clone(), second.clone(), other]).unwrap();
    let (sent, errors) = out.flush(NOW).unwrap();
    assert_eq!(
        (sent, errors.len()),
        (1, 1),
        "the other target is not held up"
    );
    assert!(errors[0].to_string().contains(&down), "{}", errors[0]);
    // A monitor answering 500 keeps its ping too.
    *srv.answer.lock().unwrap() = Answer::Status(500);
    let failing = ping(&srv.url, Kind::Healthchecks, Event::Success, NOW);
    out.push(std::slice::from_ref(&failing)).unwrap();
    let (_, errors) = out.flush(NOW).unwrap();
    assert!(
        errors.iter().any(|e| e.to_string().contains("500")),
        "{errors:?}"
    );
    let kept: Vec<Ping> = std::fs::read_to_string(d.path().join(OUTBOX))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(kept, [first, second, failing]);
    // Pings older than a week are dropped, not sent late.
    let (sent, errors) = out.flush(NOW + MAX_AGE_NS + 1).unwrap();
    assert_eq!((sent, errors.len()), (0, 0));
    assert_eq!(std::fs::read_to_string(d.path().join(OUTBOX)).unwrap(), "");
}

#[test]
fn a_slow_monitor_costs_the_job_nothing_and_its_ping_is_kept() {
    let srv = server();
    *srv.answer.lock().unwrap() = Answer::Hold;
    let d = tempfile::tempdir().unwrap();
    // A short timeout: the request is abandoned while the server still holds it.
    let out = Outbox::new(d.path(), Duration::from_millis(200));
    let handle =
        out.send_in_background(vec![ping(&srv.url, Kind::Webhook, Event::Start, NOW)], NOW);
    // The caller went on at once: the server has not answered (it holds until released).
    srv.arrived.recv().unwrap();
    handle.join().unwrap();
    let kept = std::fs::read_to_string(d.path().join(OUTBOX)).unwrap();
    assert_eq!(kept.lines().count(), 1, "the ping that timed out is kept");
    srv.release.send(()).unwrap();
    // Once the monitor answers again, it is delivered.
    *srv.answer.lock().unwrap() = Answer::Status(200);
    let (sent, errors) = Outbox::new(d.path(), TIMEOUT).flush(NOW).unwrap();
    assert_eq!((sent, errors.len()), (1, 0), "{errors:?}");
}

#[test]
fn run_ids_are_uuids_and_long_logs_send_their_tail() {
    let id = run_id();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4");
    let long = format!("{}ending", "é".repeat(20_000));
    let t = tail(&long);
    assert!(t.len() <= BODY_MAX && t.ends_with("ending"));
}

#[test]
fn a_ping_pushed_while_a_monitor_hangs_is_in_the_outbox_at_once_and_sent_after() {
    let srv = server();
    *srv.answer.lock().unwrap() = Answer::Hold;
    let d = tempfile::tempdir().unwrap();
    let start = ping(&srv.url, Kind::Webhook, Event::Start, NOW);
    let sending =
        Outbox::new(d.path(), Duration::from_secs(5)).send_in_background(vec![start.clone()], NOW);
    srv.arrived.recv().unwrap();
    // The start hangs; the end is pushed meanwhile and is in the outbox before the sender ends
    // (a process that exits now loses nothing).
    let end = ping(&srv.url, Kind::Webhook, Event::Success, NOW);
    let t = std::time::Instant::now();
    Outbox::new(d.path(), TIMEOUT)
        .push(std::slice::from_ref(&end))
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the push waited for the sender"
    );
    let kept = std::fs::read_to_string(d.path().join(OUTBOX)).unwrap();
    assert_eq!(kept.lines().count(), 2, "{kept}");
    // The sender's rewrite keeps what was pushed while it sent.
    *srv.answer.lock().unwrap() = Answer::Status(200);
    srv.release.send(()).unwrap();
    sending.join().unwrap();
    let left: Vec<Ping> = std::fs::read_to_string(d.path().join(OUTBOX))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        left,
        [end],
        "the start went, the end waits for the next send"
    );
    let (sent, errors) = Outbox::new(d.path(), TIMEOUT).flush(NOW).unwrap();
    assert_eq!((sent, errors.len()), (1, 0), "{errors:?}");
}
