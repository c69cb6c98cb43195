//! The terminal comes back after a panic: this test binary runs itself inside tmux, where a
//! child takes over the terminal, panics on another thread and exits without unwinding the
//! main one; only the panic hook can have restored the screen and the line discipline.
//! Skips (saying why) when tmux is not installed; node/tests/tui.rs installs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

const CHILD: &str = "IPVEC_TUI_PANIC_CHILD";

/// Runs only as the child: take the terminal, draw, panic elsewhere, exit hard.
#[test]
fn panic_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let (mut terminal, _guard) = ipvec_tui::terminal::enter().unwrap();
    terminal
        .draw(|frame| {
            frame.render_widget(
                ratatui::widgets::Paragraph::new("DASHBOARD UP"),
                frame.area(),
            )
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = std::thread::spawn(|| panic!("boom from a worker")).join();
    // No unwinding here: the guard's Drop never runs.
    std::process::exit(3);
}

#[test]
fn a_panic_gives_the_terminal_back() {
    if !Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        panic!(
            "this test needs tmux in a real terminal: apt-get install tmux (.ci/run installs it)"
        );
    }
    let socket = format!("ipvec-tui-panic-{}", std::process::id());
    let exe = std::env::current_exe().unwrap();
    let command = format!(
        "{CHILD}=1 '{}' --exact panic_child --nocapture --test-threads=1; echo \"exit=$?\"; \
         stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo; sleep 600",
        exe.display()
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(tmux(&[
        "new-session",
        "-d",
        "-s",
        "p",
        "-x",
        "80",
        "-y",
        "24",
        &command
    ])
    .status
    .success());
    let started = Instant::now();
    let screen = loop {
        let screen =
            String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "p"]).stdout).into_owned();
        if screen
            .lines()
            .any(|l| l.trim() == "echo" || l.trim() == "-echo")
        {
            break screen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the child never finished:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = tmux(&["kill-server"]);
    assert!(screen.contains("exit=3"), "{screen}");
    assert!(
        screen.contains("boom from a worker"),
        "the panic message is readable:\n{screen}"
    );
    assert!(
        !screen.contains("DASHBOARD UP"),
        "the alternate screen is gone:\n{screen}"
    );
    let modes: Vec<&str> = screen
        .lines()
        .map(str::trim)
        .filter(|l| ["icanon", "-icanon", "echo", "-echo"].contains(l))
        .collect();
    assert_eq!(
        modes,
        ["icanon", "echo"],
        "raw mode is off again:\n{screen}"
    );
}
