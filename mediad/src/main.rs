//! bakfs-mediad: the media daemon. Not built yet: it is its own issue.

fn main() -> std::process::ExitCode {
    eprintln!("bakfs-mediad: not implemented yet");
    std::process::ExitCode::from(1)
}
