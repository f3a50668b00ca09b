//! `--report FILE.html`: a short run's report is one self-contained file whose plots headless Chromium (Debian's
//! `chromium`, installed by scripts/install-tools.sh) renders with data: the series' colours are on the screenshot.

use std::process::Command;

use crate::support::{generator_json, Consumer};

/// Pixels within a few levels of `rgb` in an RGB(A) PNG.
fn pixels_of(png: &[u8], rgb: [u8; 3]) -> usize {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).expect("a frame");
    let channels = info.color_type.samples();
    buffer[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| p.len() >= 3 && p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 12))
        .count()
}

#[test]
fn a_reports_plots_render_with_data_in_headless_chromium() {
    let consumer = Consumer::start("consumer-report");
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("report.html");
    let (code, summary, stderr) = generator_json(&[
        "--url",
        &consumer.url,
        "--path",
        "/health",
        "--rate",
        "20",
        "--duration",
        "4s",
        "--probes",
        "1",
        "--report",
        report.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(summary["sent"], 80);
    let html = std::fs::read_to_string(&report).expect("the report was written");
    for outside in ["src=", "href=", "@import", "url("] {
        assert!(!html.contains(outside), "self-contained: nothing fetched when opened ({outside})");
    }
    let lines: Vec<&str> = html.split("<polyline points=\"").skip(1).collect();
    assert!(lines.len() >= 5, "rate, intended, three percentiles, outcomes: {} lines", lines.len());
    for line in &lines {
        let points = line.split('"').next().expect("points").split(' ').count();
        assert!(points >= 3, "every plotted series has data over the run: {points} points");
    }
    assert!(html.contains("consumer-report"), "the per-pod distribution names the pod");

    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromium is installed (scripts/install-tools.sh installs Debian's)");
    let screenshot = dir.path().join("report.png");
    let output = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .args(["--window-size=1000,1400", "--hide-scrollbars"])
        .arg(format!("file://{}", report.display()))
        .output()
        .expect("run chromium");
    assert!(output.status.success(), "chromium: {}", String::from_utf8_lossy(&output.stderr));
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    // The first series of every chart is #1f77b4, the second #d62728: both drawn, not just their legends.
    let (blue, red) = (pixels_of(&png, [0x1f, 0x77, 0xb4]), pixels_of(&png, [0xd6, 0x27, 0x28]));
    println!("report screenshot: {blue} pixels of the first series' colour, {red} of the second's");
    assert!(blue > 1500 && red > 500, "the plots' lines are on the page: {blue} and {red} pixels");
}
