//! `uniperf plot LOG… -o OUT.png|OUT.svg`: one figure of five panels sharing a time axis —
//! throughput, time-sequence (with retransmissions marked), cwnd estimate and in-flight, RTT,
//! and windows — for every data flow of every log, overlaid (one colour per flow). Logs are
//! CSV or JSON Lines (docs/flowlog.md), recognised by their first line; each log's clock
//! starts at the first row of the flows drawn, so runs (and both ends of a test) line up. Text uses a font compiled into the binary.

use crate::flowlog_cmd::parse_subcommand;
use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use netstack::flowlog::{Event, FlowId, FlowSample, parse_log};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Payload a flow without a stream id must have moved to count as a data flow.
const MIN_DATA_BYTES: u64 = 64 * 1024;
/// Points kept per line after decimation (min/max per bucket keeps the shape).
const MAX_POINTS: usize = 3000;
/// Retransmission markers drawn per flow at most (evenly thinned beyond).
const MAX_MARKERS: usize = 4000;

/// Tableau 10: distinct, colour-blind-friendlier than the primaries.
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Plots per-flow TCP logs over time: throughput, sequence, cwnd, RTT, windows.
///
/// Logs are CSV or JSON Lines, as written by --flowlog, uniperf collect or uniperf flowlog
/// --pcap. The figure has five panels: throughput, time-sequence with retransmissions, cwnd
/// estimate and in-flight, RTT, and the peer's and local receive windows. Several logs are
/// overlaid, one colour per flow; each log's time starts at 0 at the first row of the flows
/// shown.
#[derive(Parser)]
#[command(name = "uniperf plot", disable_version_flag = true)]
struct Args {
    /// Flow logs to plot
    #[arg(value_name = "LOG", required = true)]
    logs: Vec<PathBuf>,
    /// PNG or SVG, chosen by the extension
    #[arg(short = 'o', long = "output", value_name = "FILE", value_parser = output_file)]
    out: OutputFile,
    /// Also plot control connections and other flows without an iperf3 stream id
    #[arg(long)]
    all_flows: bool,
    /// Figure title (default: the log file names)
    #[arg(long, value_name = "TEXT")]
    title: Option<String>,
    /// Figure width in pixels
    #[arg(long, value_name = "PX", default_value_t = 1400, value_parser = clap::value_parser!(u32).range(400..=8000))]
    width: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Png,
    Svg,
}

/// The figure's file and what its name makes it.
#[derive(Clone)]
struct OutputFile {
    path: PathBuf,
    kind: Kind,
}

fn output_file(name: &str) -> Result<OutputFile, String> {
    let path = PathBuf::from(name);
    let kind = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => Kind::Png,
        Some("svg") => Kind::Svg,
        _ => return Err("the name must end in .png or .svg".into()),
    };
    Ok(OutputFile { path, kind })
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let Some(a) = parse_subcommand::<Args>("plot", args)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let OutputFile { path: out, kind } = &a.out;
    let kind = *kind;
    let mut flows = Vec::new();
    for path in &a.logs {
        let samples = read_log(path)?;
        flows.extend(select_flows(path, samples, a.all_flows));
    }
    if flows.is_empty() {
        bail!("no data flows in the logs (flows without a stream id and under 64 KiB are skipped; try --all-flows)");
    }
    for (i, f) in flows.iter_mut().enumerate() {
        f.color = PALETTE[i % PALETTE.len()];
    }
    let title = a.title.clone().unwrap_or_else(|| {
        let names: Vec<String> = a.logs.iter().map(|p| file_name(p)).collect();
        format!("TCP flow log: {}", names.join(", "))
    });
    let mut fig = Figure::new(flows);
    fig.segments = kind == Kind::Png;
    let height = fig.height(a.width);
    register_fonts();
    match kind {
        Kind::Png => {
            let root = BitMapBackend::new(out, (a.width, height)).into_drawing_area();
            fig.draw(&root, &title)?;
            root.present().map_err(|e| anyhow!("cannot write '{}': {e}", out.display()))?;
        }
        Kind::Svg => {
            let root = SVGBackend::new(out, (a.width, height)).into_drawing_area();
            fig.draw(&root, &title)?;
            root.present().map_err(|e| anyhow!("cannot write '{}': {e}", out.display()))?;
        }
    }
    eprintln!("uniperf plot: {} flow(s) from {} log(s) -> {}", fig.flows.len(), a.logs.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

/// Registers the compiled-in DejaVu font as "sans-serif" (once).
pub(crate) fn register_fonts() {
    use std::sync::Once;
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        // The bytes are a valid TrueType font compiled in; failure would be a packaging bug,
        // and plotters then falls back to drawing no text rather than failing.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

/// Reads a whole log, CSV or JSON Lines; errors name the file, line and field.
pub fn read_log(path: &Path) -> Result<Vec<FlowSample>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read flow log '{}'", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow!("{}: not a text file (invalid UTF-8 at byte {})", path.display(), e.utf8_error().valid_up_to())
    })?;
    let samples = parse_log(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if samples.is_empty() {
        bail!("{}: the log has no samples", path.display());
    }
    Ok(samples)
}

/// One flow of one log, ready to draw.
struct FlowData {
    label: String,
    color: RGBColor,
    /// Rows in time order, with `t` in seconds since the log's first row.
    rows: Vec<(f64, FlowSample)>,
    /// The flow sends data (else it only receives: no RTT, cwnd or retransmissions).
    sender: bool,
}

impl FlowData {
    fn last(&self) -> &FlowSample {
        &self.rows[self.rows.len() - 1].1
    }

    fn span(&self) -> (f64, f64) {
        (self.rows[0].0, self.rows[self.rows.len() - 1].0)
    }

    /// Payload bytes this flow moved in its main direction (acked if it sends).
    fn moved(&self) -> u64 {
        let l = self.last();
        if self.sender { l.bytes_acked } else { l.bytes_received }
    }

    fn mean_mbps(&self) -> f64 {
        let (a, b) = self.span();
        if b > a { self.moved() as f64 * 8.0 / (b - a) / 1e6 } else { 0.0 }
    }
}

fn select_flows(path: &Path, samples: Vec<FlowSample>, all: bool) -> Vec<FlowData> {
    let mut by_flow: BTreeMap<FlowId, Vec<FlowSample>> = BTreeMap::new();
    for s in samples {
        by_flow.entry(s.flow).or_default().push(s);
    }
    let mut flows: Vec<(FlowId, Vec<FlowSample>)> = by_flow.into_iter().collect();
    for (_, rows) in flows.iter_mut() {
        rows.sort_by_key(|s| s.t_us);
    }
    let stream_of = |rows: &[FlowSample]| rows.iter().map(|s| s.stream).max().unwrap_or(-1);
    let payload = |rows: &[FlowSample]| rows.last().map_or(0, |l| l.bytes_sent.max(l.bytes_received));
    let labelled = flows.iter().any(|(_, r)| stream_of(r) >= 0);
    let keep =
        |rows: &[FlowSample]| all || if labelled { stream_of(rows) >= 0 } else { payload(rows) >= MIN_DATA_BYTES };
    let mut kept: Vec<_> = flows.iter().filter(|(_, r)| keep(r)).cloned().collect();
    if kept.is_empty() {
        kept = flows; // nothing looks like data: show what there is
    }
    kept.sort_by_key(|(f, r)| (stream_of(r) < 0, stream_of(r), *f));
    // Time 0 is the first row of the flows shown (the first data connection's SYN, usually),
    // so the two ends of one test line up whatever else the log holds before it.
    let t0 = kept.iter().filter_map(|(_, r)| r.first().map(|s| s.t_us)).min().unwrap_or(0);
    let name = file_name(path);
    kept.into_iter()
        .map(|(flow, rows)| {
            let stream = stream_of(&rows);
            let last = rows[rows.len() - 1];
            let sender = last.bytes_sent > 0 && last.bytes_sent >= last.bytes_received;
            let what = if stream >= 0 { format!("stream {stream}") } else { flow.to_string() };
            let role = if sender { "sender" } else { "receiver" };
            FlowData {
                label: format!("{what} {role}, {name}"),
                color: PALETTE[0],
                rows: rows.into_iter().map(|s| ((s.t_us.saturating_sub(t0)) as f64 / 1e6, s)).collect(),
                sender,
            }
        })
        .collect()
}

/// Keeps the shape of a long line: per time bucket its first, lowest, highest and last point.
fn decimate(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let buckets = (max / 4).max(1);
    let (t0, t1) = (points[0].0, points[points.len() - 1].0);
    let width = ((t1 - t0) / buckets as f64).max(f64::MIN_POSITIVE);
    let mut out = Vec::with_capacity(max + 4);
    let mut i = 0;
    while i < points.len() {
        let b = ((points[i].0 - t0) / width).floor();
        let mut j = i;
        let (mut lo, mut hi) = (i, i);
        while j < points.len() && ((points[j].0 - t0) / width).floor() == b {
            if points[j].1 < points[lo].1 {
                lo = j;
            }
            if points[j].1 > points[hi].1 {
                hi = j;
            }
            j += 1;
        }
        let mut idx = [i, lo, hi, j - 1];
        idx.sort_unstable();
        let mut prev = usize::MAX;
        for k in idx {
            if k != prev {
                out.push(points[k]);
                prev = k;
            }
        }
        i = j;
    }
    out
}

/// Every `n`-th element so at most `max` remain.
fn thin<T: Copy>(v: &[T], max: usize) -> Vec<T> {
    let step = v.len().div_ceil(max.max(1)).max(1);
    v.iter().step_by(step).copied().collect()
}

/// Value of a cumulative counter at time `t`, interpolated linearly between the rows around
/// it (rows are samples of a counter that grew in between; a step would alias against bins).
fn counter_at(rows: &[(f64, FlowSample)], t: f64, get: impl Fn(&FlowSample) -> u64) -> f64 {
    let i = rows.partition_point(|(rt, _)| *rt <= t);
    if i == 0 {
        return rows.first().map_or(0.0, |r| get(&r.1) as f64);
    }
    let (t0, v0) = (rows[i - 1].0, get(&rows[i - 1].1) as f64);
    match rows.get(i) {
        Some((t1, s1)) if *t1 > t0 => v0 + (get(s1) as f64 - v0) * (t - t0) / (t1 - t0),
        _ => v0,
    }
}

/// A round bin width for throughput: about 150 bins over the run, never finer than twice the
/// typical spacing of samples (interval-sampled logs would otherwise alternate with zeros).
fn bin_width(flows: &[FlowData], t_max: f64) -> f64 {
    // The sparsest flow's typical spacing (a flow with a burst of event rows must not make
    // the bins finer than another flow's interval samples).
    let typical = flows
        .iter()
        .map(|f| {
            let mut gaps: Vec<f64> = f.rows.windows(2).map(|w| w[1].0 - w[0].0).filter(|g| *g > 0.0).collect();
            gaps.sort_by(f64::total_cmp);
            gaps.get(gaps.len() / 2).copied().unwrap_or(0.0)
        })
        .fold(0.0, f64::max);
    let want = (t_max / 150.0).max(typical * 2.0).max(1e-4);
    let mut nice = 1e-4;
    for m in [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0] {
        nice = m;
        if m >= want {
            break;
        }
    }
    nice
}

fn throughput_points(f: &FlowData, width: f64) -> Vec<(f64, f64)> {
    let (start, end) = f.span();
    let get = |s: &FlowSample| if f.sender { s.bytes_acked } else { s.bytes_received };
    let mut out = Vec::new();
    let mut t = (start / width).floor() * width;
    while t < end {
        let (a, b) = (counter_at(&f.rows, t, get), counter_at(&f.rows, t + width, get));
        out.push((t + width / 2.0, (b - a).max(0.0) * 8.0 / width / 1e6));
        t += width;
    }
    out
}

/// A quantity of one flow as a step line: each value holds until the next sample (a state
/// seen at sample times; interpolating would draw slopes across e.g. a 1 s timeout).
fn series(f: &FlowData, get: impl Fn(&FlowSample) -> Option<f64>) -> Vec<(f64, f64)> {
    let pts: Vec<(f64, f64)> = f.rows.iter().filter_map(|(t, s)| get(s).map(|v| (*t, v))).collect();
    let mut steps = Vec::with_capacity(pts.len() * 2);
    for (i, &(t, v)) in pts.iter().enumerate() {
        if i > 0 && pts[i - 1].1 != v {
            steps.push((t, pts[i - 1].1));
        }
        steps.push((t, v));
    }
    decimate(&steps, MAX_POINTS)
}

/// Scattered samples (RTT): no steps, just the points.
fn points(f: &FlowData, get: impl Fn(&FlowSample) -> Option<f64>) -> Vec<(f64, f64)> {
    let pts: Vec<(f64, f64)> = f.rows.iter().filter_map(|(t, s)| get(s).map(|v| (*t, v))).collect();
    decimate(&pts, MAX_POINTS * 2)
}

const KIB: f64 = 1024.0;
const MB: f64 = 1e6;

/// A line of one flow in one panel.
struct Line {
    points: Vec<(f64, f64)>,
    color: RGBColor,
    style: LineKind,
    label: String,
}

#[derive(Clone, Copy, PartialEq)]
enum LineKind {
    Solid,
    Dashed,
    /// Thin and pale: a noisy companion of a solid line.
    Faint,
    Dots,
    /// Retransmissions: timeouts as crosses, fast retransmits as triangles (black).
    RetxTimeout,
    RetxFast,
}

struct Panel {
    title: String,
    y_desc: &'static str,
    lines: Vec<Line>,
    /// Said in the panel when it has nothing to show.
    empty_note: &'static str,
    /// Upper end of the y axis when outliers would flatten everything else.
    y_clip: Option<f64>,
}

struct Figure {
    flows: Vec<FlowData>,
    t_max: f64,
    /// Draw wide lines segment by segment (bitmap output).
    segments: bool,
}

impl Figure {
    fn new(flows: Vec<FlowData>) -> Self {
        let t_max = flows.iter().map(|f| f.span().1).fold(0.0, f64::max).max(1e-3);
        Figure { flows, t_max, segments: false }
    }

    fn legend_rows(&self) -> u32 {
        // Legends sit beside each panel; a panel grows with the longest one.
        (self.flows.len() as u32 * 2 + 2).max(5)
    }

    fn height(&self, width: u32) -> u32 {
        let panel = (width as f64 * 0.26).max(self.legend_rows() as f64 * 22.0 + 60.0) as u32;
        70 + panel * 5
    }

    fn panels(&self) -> Vec<Panel> {
        let bin = bin_width(&self.flows, self.t_max);
        let mut tput = Panel {
            title: format!(
                "Throughput (Mbit/s, {} ms bins; receivers: bytes received, senders: bytes acked)",
                fmt_ms(bin)
            ),
            y_desc: "Mbit/s",
            lines: Vec::new(),
            empty_note: "no data moved",
            y_clip: None,
        };
        let mut tseq = Panel {
            title: "Time-sequence (relative sequence, MB; x = timeout retransmission, △ = fast retransmission)".into(),
            y_desc: "sequence (MB)",
            lines: Vec::new(),
            empty_note: "no data",
            y_clip: None,
        };
        let mut cwnd = Panel {
            title: "Congestion window estimate and bytes in flight (KiB)".into(),
            y_desc: "KiB",
            lines: Vec::new(),
            empty_note: "no sending flow: cwnd and in-flight belong to the sender's log",
            y_clip: None,
        };
        let mut rtt = Panel {
            title: "Round-trip time (ms): samples and smoothed (RFC 6298)".into(),
            y_desc: "ms",
            lines: Vec::new(),
            empty_note: "no RTT samples: RTT is measured by the sending side (plot the sender's log)",
            y_clip: None,
        };
        let mut wnd = Panel {
            title: "Receive windows (KiB): advertised by the peer and by the local stack".into(),
            y_desc: "KiB",
            lines: Vec::new(),
            empty_note: "no window information",
            y_clip: None,
        };
        for f in &self.flows {
            let c = f.color;
            tput.lines.push(Line {
                points: throughput_points(f, bin),
                color: c,
                style: LineKind::Solid,
                label: format!("{}: mean {:.0} Mbit/s", f.label, f.mean_mbps()),
            });
            if f.sender {
                tseq.lines.push(Line {
                    points: series(f, |s| Some(s.snd_nxt as f64 / MB)),
                    color: c,
                    style: LineKind::Solid,
                    label: format!("sent (snd_nxt): {}", f.label),
                });
                tseq.lines.push(Line {
                    points: series(f, |s| Some(s.snd_una as f64 / MB)),
                    color: c,
                    style: LineKind::Dashed,
                    label: format!("acked (snd_una): {}", f.label),
                });
                let retx = |ev: Event| -> Vec<(f64, f64)> {
                    let v: Vec<(f64, f64)> = f
                        .rows
                        .iter()
                        .filter(|(_, s)| s.event == ev)
                        .map(|(t, s)| (*t, s.seg_seq.unwrap_or(s.snd_nxt) as f64 / MB))
                        .collect();
                    thin(&v, MAX_MARKERS)
                };
                for (ev, kind, what) in [
                    (Event::RetxRto, LineKind::RetxTimeout, "timeout retransmissions"),
                    (Event::RetxFast, LineKind::RetxFast, "fast retransmissions"),
                ] {
                    let pts = retx(ev);
                    if !pts.is_empty() {
                        tseq.lines.push(Line {
                            label: format!("{} {what}: {}", pts.len(), f.label),
                            points: pts,
                            color: c,
                            style: kind,
                        });
                    }
                }
                cwnd.lines.push(Line {
                    points: series(f, |s| Some(s.inflight as f64 / KIB)),
                    color: c,
                    style: LineKind::Faint,
                    label: format!("in flight: {}", f.label),
                });
                cwnd.lines.push(Line {
                    points: series(f, |s| (s.cwnd_est > 0).then_some(s.cwnd_est as f64 / KIB)),
                    color: c,
                    style: LineKind::Solid,
                    label: format!("cwnd estimate: {}", f.label),
                });
                let samples = points(f, |s| s.rtt_us.filter(|_| s.event != Event::Interval).map(|v| v as f64 / 1e3));
                // Interval-sampled logs repeat the interval's latest sample: plot those too.
                let samples =
                    if samples.is_empty() { points(f, |s| s.rtt_us.map(|v| v as f64 / 1e3)) } else { samples };
                if !samples.is_empty() {
                    rtt.lines.push(Line {
                        points: samples,
                        color: c,
                        style: LineKind::Dots,
                        label: format!("RTT samples: {}", f.label),
                    });
                    rtt.lines.push(Line {
                        points: series(f, |s| s.srtt_us.map(|v| v as f64 / 1e3)),
                        color: c,
                        style: LineKind::Solid,
                        label: format!("smoothed RTT: {}", f.label),
                    });
                }
            } else {
                tseq.lines.push(Line {
                    points: series(f, |s| Some(s.bytes_received as f64 / MB)),
                    color: c,
                    style: LineKind::Solid,
                    label: format!("received in order: {}", f.label),
                });
            }
            wnd.lines.push(Line {
                points: series(f, |s| Some(s.peer_wnd as f64 / KIB)),
                color: c,
                style: LineKind::Solid,
                label: format!("peer's window: {}", f.label),
            });
            wnd.lines.push(Line {
                points: series(f, |s| Some(s.local_wnd as f64 / KIB)),
                color: c,
                style: LineKind::Dashed,
                label: format!("local window: {}", f.label),
            });
        }
        // A few RTO-sized RTT samples would flatten the rest: clip at 3× the 99th percentile.
        let mut all: Vec<f64> = rtt.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).collect();
        all.sort_by(f64::total_cmp);
        if let (Some(&max), Some(&p99)) = (all.last(), all.get(all.len() * 99 / 100))
            && p99 > 0.0
            && max > p99 * 5.0
        {
            rtt.y_clip = Some(p99 * 3.0);
            rtt.title.push_str(&format!(" — axis clipped, max {max:.1} ms"));
        }
        vec![tput, tseq, cwnd, rtt, wnd]
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, title: &str) -> Result<()> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the plot failed: {e}");
        root.fill(&WHITE).map_err(err)?;
        let area = root.titled(title, ("sans-serif", 26).into_font().style(FontStyle::Bold)).map_err(err)?;
        let panels = self.panels();
        for (panel, part) in panels.iter().zip(area.split_evenly((panels.len(), 1))) {
            self.draw_panel(&part, panel).map_err(err)?;
        }
        Ok(())
    }

    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        p: &Panel,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let (w, _) = area.dim_in_pixel();
        // Plot on the left, legend on the right, so lines are never hidden under it.
        let legend_w = (w as f64 * 0.30) as u32;
        let (plot_area, legend_area) = area.split_horizontally(w - legend_w);
        let y_max = p
            .y_clip
            .unwrap_or_else(|| p.lines.iter().flat_map(|l| l.points.iter().map(|q| q.1)).fold(0.0, f64::max))
            .max(1e-9);
        let y_top = nice_ceiling(y_max * 1.05);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(&p.title, ("sans-serif", 17).into_font().style(FontStyle::Bold))
            .margin(8)
            .margin_right(16)
            .x_label_area_size(38)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..self.t_max * 1.01, 0.0..y_top)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc(p.y_desc)
            .axis_desc_style(("sans-serif", 15))
            .label_style(("sans-serif", 13))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(205, 205, 205))
            .y_label_formatter(&|v| fmt_axis(*v))
            .x_label_formatter(&|v| fmt_axis(*v))
            .draw()?;
        // Clip to the axis, and keep one point per pixel: plotters' rasteriser turns a
        // zero-length segment of a wide line into a spike across the figure.
        let (pw, ph) = chart.plotting_area().dim_in_pixel();
        let x_max = self.t_max * 1.01;
        let clip = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
            let mut out: Vec<(f64, f64)> = Vec::with_capacity(pts.len());
            let mut last_px = None;
            for &(x, y) in pts {
                if !(x.is_finite() && y.is_finite()) {
                    continue;
                }
                let y = y.clamp(0.0, y_top);
                let px = ((x / x_max * pw as f64).round() as i64, (y / y_top * ph as f64).round() as i64);
                if last_px != Some(px) {
                    out.push((x, y));
                    last_px = Some(px);
                }
            }
            out
        };
        let mut legend: Vec<(&Line, bool)> = Vec::new();
        // Faint and dotted companions first, so the main lines are drawn over them.
        let order = |l: &Line| match l.style {
            LineKind::Faint | LineKind::Dots => 0,
            LineKind::Solid | LineKind::Dashed => 1,
            LineKind::RetxFast | LineKind::RetxTimeout => 2,
        };
        let mut lines: Vec<&Line> = p.lines.iter().collect();
        lines.sort_by_key(|l| order(l));
        let flows = self.flows.len();
        for l in lines {
            let pts = clip(&l.points);
            // Earlier flows are drawn wider, so a later flow on the same values does not hide them.
            let rank = self.flows.iter().position(|f| f.color == l.color).unwrap_or(0);
            let width = 2 + (flows - 1 - rank.min(flows - 1)).min(3) as u32;
            // The bitmap rasteriser joins wide segments with miters that shoot far out at sharp
            // turns (a noisy series has many), so there each segment is drawn on its own.
            match (l.style, self.segments) {
                (LineKind::Solid, false) => {
                    chart.draw_series(LineSeries::new(pts, l.color.stroke_width(width)))?;
                }
                (LineKind::Solid, true) => {
                    let style = l.color.stroke_width(width);
                    chart.draw_series(pts.windows(2).map(|w| PathElement::new(vec![w[0], w[1]], style)))?;
                }
                (LineKind::Dashed, false) => {
                    chart.draw_series(DashedLineSeries::new(pts, 7, 5, l.color.stroke_width(width)))?;
                }
                (LineKind::Dashed, true) => {
                    let style = l.color.stroke_width(width);
                    chart
                        .draw_series(dashes(&pts, &chart, 7.0, 5.0).into_iter().map(|d| PathElement::new(d, style)))?;
                }
                (LineKind::Faint, _) => {
                    chart.draw_series(LineSeries::new(pts, l.color.mix(0.35).stroke_width(1)))?;
                }
                (LineKind::Dots, _) => {
                    chart.draw_series(pts.into_iter().map(|q| Circle::new(q, 2, l.color.mix(0.35).filled())))?;
                }
                (LineKind::RetxTimeout, _) => {
                    chart.draw_series(pts.into_iter().map(|q| Cross::new(q, 5, BLACK.stroke_width(2))))?;
                }
                (LineKind::RetxFast, _) => {
                    chart.draw_series(pts.into_iter().map(|q| TriangleMarker::new(q, 5, BLACK.filled())))?;
                }
            }
        }
        for l in &p.lines {
            legend.push((l, true));
        }
        if p.lines.iter().all(|l| l.points.is_empty()) {
            let (pw, ph) = plot_area.dim_in_pixel();
            plot_area.draw(&Text::new(
                p.empty_note,
                ((pw / 2) as i32 - (p.empty_note.len() as i32 * 4), (ph / 2) as i32),
                ("sans-serif", 16).into_font().color(&RGBColor(120, 120, 120)),
            ))?;
        }
        draw_legend(&legend_area, &legend)
    }
}

/// A polyline cut into dashes of `on` pixels with `off`-pixel gaps, in data coordinates, each
/// dash a short run of straight pieces (for the bitmap backend, see `draw_panel`).
fn dashes<DB: DrawingBackend>(
    pts: &[(f64, f64)],
    chart: &ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    on: f64,
    off: f64,
) -> Vec<Vec<(f64, f64)>> {
    let px = |p: (f64, f64)| {
        let c = chart.backend_coord(&p);
        (c.0 as f64, c.1 as f64)
    };
    let mut out = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    let (mut solid, mut left) = (true, on);
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (pa, pb) = (px(a), px(b));
        let len = ((pb.0 - pa.0).powi(2) + (pb.1 - pa.1).powi(2)).sqrt();
        let mut t = 0.0;
        while len > 0.0 && t < 1.0 {
            let step = (left / len).min(1.0 - t);
            let p0 = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
            t += step;
            let p1 = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
            left -= step * len;
            if solid {
                if cur.is_empty() {
                    cur.push(p0);
                }
                cur.push(p1);
            }
            if left <= 1e-9 {
                if solid && cur.len() > 1 {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
                solid = !solid;
                left = if solid { on } else { off };
            }
        }
    }
    if solid && cur.len() > 1 {
        out.push(cur);
    }
    // Each dash as separate two-point pieces: no joins, so no miter spikes.
    out.into_iter().flat_map(|d| d.windows(2).map(|w| w.to_vec()).collect::<Vec<_>>()).collect()
}

/// The legend as a list beside the panel: a swatch drawn like the line, then its label.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(&Line, bool)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (w, _) = area.dim_in_pixel();
    let font = ("sans-serif", 13).into_font();
    let max_chars = ((w as usize).saturating_sub(50) / 7).max(10);
    let mut y = 36;
    for (l, _) in entries {
        let (x0, x1, ym) = (6, 38, y + 7);
        match l.style {
            LineKind::Solid => area.draw(&PathElement::new(vec![(x0, ym), (x1, ym)], l.color.stroke_width(3)))?,
            LineKind::Dashed => {
                for s in [(x0, x0 + 9), (x0 + 13, x0 + 22), (x0 + 26, x1)] {
                    area.draw(&PathElement::new(vec![(s.0, ym), (s.1, ym)], l.color.stroke_width(3)))?;
                }
            }
            LineKind::Faint => {
                area.draw(&PathElement::new(vec![(x0, ym), (x1, ym)], l.color.mix(0.35).stroke_width(2)))?
            }
            LineKind::Dots => {
                for x in [x0 + 4, x0 + 16, x0 + 28] {
                    area.draw(&Circle::new((x, ym), 3, l.color.mix(0.5).filled()))?;
                }
            }
            LineKind::RetxTimeout => area.draw(&Cross::new(((x0 + x1) / 2, ym), 6, BLACK.stroke_width(2)))?,
            LineKind::RetxFast => area.draw(&TriangleMarker::new(((x0 + x1) / 2, ym), 6, BLACK.filled()))?,
        }
        let text = shorten(&l.label, max_chars);
        area.draw(&Text::new(text, (x1 + 8, y), font.clone()))?;
        y += 22;
    }
    Ok(())
}

/// `label` cut in the middle to `max` characters, so both its start (what) and end (which
/// file) stay readable.
fn shorten(label: &str, max: usize) -> String {
    let n = label.chars().count();
    if n <= max {
        return label.to_string();
    }
    let head = max * 2 / 3;
    let tail = max - head - 1;
    let start: String = label.chars().take(head).collect();
    let end: String = label.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

fn fmt_ms(secs: f64) -> String {
    let ms = secs * 1e3;
    if ms >= 1.0 { format!("{ms:.0}") } else { format!("{ms:.1}") }
}

/// Axis numbers without float noise: 0.30000000000000004 → 0.3.
fn fmt_axis(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}").trim_end_matches(".0").to_string()
    } else if a >= 0.01 {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// 1, 2, 2.5 or 5 times a power of ten, at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimation_keeps_extremes_and_order() {
        let pts: Vec<(f64, f64)> =
            (0..100_000).map(|i| (i as f64, if i == 5_000 { 1e9 } else { (i % 7) as f64 })).collect();
        let d = decimate(&pts, 1000);
        assert!(d.len() <= 1100, "{}", d.len());
        assert!(d.iter().any(|p| p.1 == 1e9));
        assert!(d.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(d.first(), pts.first());
        assert_eq!(d.last(), pts.last());
    }

    #[test]
    fn nice_numbers() {
        assert_eq!(nice_ceiling(0.93), 1.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(2300.0), 2500.0);
        assert_eq!(fmt_axis(0.30000000000000004), "0.3");
        assert_eq!(fmt_axis(1500.0), "1500");
    }
}
