//! A one-line progress display on stderr, redrawn a few times a second.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

pub fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

impl Ticker {
    /// Starts redrawing `line()` every 250 ms if `enabled`.
    pub fn start(enabled: bool, line: impl Fn(Duration) -> String + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if !enabled {
            return Self { stop, handle: None };
        }
        let s = stop.clone();
        let t0 = Instant::now();
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let mut e = std::io::stderr().lock();
                let _ = write!(e, "\r\x1b[K{}", line(t0.elapsed()));
                let _ = e.flush();
            }
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
