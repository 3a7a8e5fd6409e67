//! The uniperf unikernel: one ELF that boots through the PVH entry (QEMU `-kernel`, Xen
//! `type = "pvh"`), brings up memory, console and a TSC clock, finds a virtio-net device and
//! runs the iperf3 server or client role configured on the kernel command line, e.g.
//! `-append "-s --ip 198.18.0.2/24"` or `-append "-c 198.18.0.1 -t 5 --ip 198.18.0.2/24"`.
//!
//! Boot order: [`boot`] (32-bit entry, long mode) → `rust_start`: console, exception
//! tables, start info and heap ([`mem`]), clock, then [`run`] parses the command line with
//! the same parser as the Linux CLI and hands the NIC to the role. The VM's exit status
//! tells how it went ([`exit`] has the table).
//!
//! Flow logs: with `--flowlog-collect ADDR:PORT` (or `--flowlog console`) the NIC is wrapped
//! in a flow probe, and each test's log leaves when the test ends (server: after every test;
//! client: before powering off) — over TCP to `uniperf collect` with the image's own stack,
//! or printed to the console between marker lines ([`flowlog_out`]).
#![no_std]
#![no_main]

extern crate alloc;

mod apic;
mod boot;
mod clock;
mod console;
mod cpu;
mod exit;
mod mem;
mod mtu;
mod net;
mod paging;
mod platform;
mod rtc;
mod traps;
mod xen;

pub use paging::map_identity;

use alloc::string::String;
use core::sync::atomic::{AtomicBool, Ordering};
use netstack::driver::{self, Platform, Setup, Stack};
use netstack::flowlog::ship::{Collector, ShipHeader, TestLog, format_name, probe_config};
use netstack::flowlog::{FlowProbe, FlowSample, ProbeConfig};
use netstack::machine::Machine;
use netstack::options::{FlowLogOptions, Options, Target, split_cmdline, usage};
use netstack::smoltcp::time::Duration;
use netstack::smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint};
use netstack::stack::NetConfig;
use platform::{ImageMachine, ImagePlatform};

const PLATFORM_NOTE: &str = "This is the uniperf unikernel: its options come from the kernel command line \
(QEMU -append, xl extra=) and it needs an address for its NIC (--ip ADDR/PREFIX, optionally \
--gateway ADDR and --mtu N).";

/// Kernel-parameter words that belong to the NIC driver, not to us (QEMU's microvm appends
/// `virtio_mmio.device=512@0xfeb00e00:12` when ACPI is off).
const DRIVER_PARAMS: &[&str] = net::CMDLINE_PARAMS;

/// `uniperf.crash=panic|pagefault|stackoverflow`: makes the image fail on purpose after boot,
/// so tests can check that failures print and end the VM with the crash status.
const CRASH_PARAM: &str = "uniperf.crash=";

/// `uniperf.heapstats`: a `uniperf: heap: …` line (in use, high-water mark, free, refused
/// allocations) on the console at boot and after every test, for soaks.
const HEAPSTATS_PARAM: &str = "uniperf.heapstats";

static HEAPSTATS: AtomicBool = AtomicBool::new(false);

/// The heap line `uniperf.heapstats` asks for.
fn print_heap(when: &str) {
    let (used, high, failed) = mem::heap_marks();
    let free = mem::heap_usage().1;
    println!(
        "uniperf: heap: {when}: {used} B in use, high-water {high} B, {free} B free, {failed} allocations refused"
    );
}

/// `uniperf.idle=poll`: busy-poll when idle even where interrupts could be set up (to
/// compare); `uniperf.idle=halt` (the default) halts until an interrupt.
const IDLE_PARAM: &str = "uniperf.idle=";

/// Called by the boot trampoline in 64-bit mode with the physical address of
/// `hvm_start_info`.
extern "C" fn rust_start(start_info_paddr: u32) -> ! {
    let entry_tsc = clock::ticks();
    let uart = console::init();
    traps::init();
    let hv = cpu::hypervisor();
    if hv.kind == cpu::HypervisorKind::Xen && !uart {
        console::use_xen();
    }
    let xen_error = xen::init(&hv).err();
    // SAFETY: the loader's pointer, read before any allocation can reuse that memory.
    let mut info = match unsafe { mem::BootInfo::read(start_info_paddr) } {
        Ok(info) => info,
        Err(e) => fatal(e),
    };
    xen::set_dom0(info.xen_dom0());
    if info.memmap().is_empty() && xen::active() {
        // Xen's PVH dom0 builder gives start info v0 without a memory map: ask Xen.
        match xen::hypercall::memory_map() {
            Ok(map) => info.fill_memmap(map.into_iter()),
            Err(e) => println!("uniperf: XENMEM_memory_map failed (error {e})"),
        }
    }
    let heap = match mem::init_heap(&info) {
        Ok(h) => h,
        Err(e) => fatal(e),
    };
    if let Some(e) = xen_error {
        println!("uniperf: Xen set-up failed - {e}");
    }
    let code = run(&info, &heap, uart, entry_tsc);
    exit::exit(code)
}

fn fatal(msg: &str) -> ! {
    println!("uniperf: boot error - {msg}");
    exit::exit(exit::CRASH)
}

fn mib(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

fn run(info: &mem::BootInfo, heap: &mem::HeapReport, uart: bool, entry_tsc: u64) -> u8 {
    let (image_start, image_end) = boot::image_range();
    println!(
        "uniperf: boot: PVH, hvm_start_info v{}, image {:#x}-{:#x} ({} KiB)",
        info.version,
        image_start,
        image_end,
        (image_end - image_start) / 1024
    );
    if xen::active() {
        let (major, minor) = xen::version();
        let (ring, port) = xen::console::describe();
        let role = if info.xen_dom0() { "dom0" } else { "domU" };
        println!("uniperf: xen: version {major}.{minor}, PVH {role}; console ring at {ring:#x}, event channel {port}");
    }
    println!(
        "uniperf: console: {}",
        if uart {
            "16550 UART at 0x3f8"
        } else if xen::console::present() {
            "Xen PV console"
        } else if xen::active() {
            "Xen's debug port 0xE9 (no PV console ring)"
        } else {
            "no UART found"
        }
    );
    println!(
        "uniperf: memory: {} MiB RAM in {} map entries{}, heap {} MiB in {} region(s) from {:#x}",
        mib(heap.ram_bytes),
        info.memmap().len(),
        if info.memmap_from_xen { " (from XENMEM_memory_map)" } else { "" },
        mib(heap.heap_bytes),
        heap.regions,
        heap.first_addr
    );
    let hv = cpu::hypervisor();
    let cal = match clock::init(&hv) {
        Ok(c) => c,
        Err(e) => {
            println!("uniperf: clock error - {e}");
            return exit::FAILURE;
        }
    };
    // No RTC on a PVH domU (probing its absent CMOS costs seconds): Xen's wall clock instead.
    let boot_unix = if xen::active() { xen::unix_time() } else { rtc::unix_time() };
    let mut machine = ImageMachine::new(&hv, boot_unix);
    println!(
        "uniperf: clock: TSC {}.{:03} MHz ({}), {}, RTC {}",
        cal.hz / 1_000_000,
        cal.hz / 1000 % 1000,
        cal.method,
        hv.name(),
        match (xen::active(), boot_unix.is_some()) {
            (true, true) => "none, Xen wall clock",
            (true, false) => "none, no Xen wall clock",
            (false, true) => "present",
            (false, false) => "absent",
        }
    );
    println!("uniperf: random: {}", if machine.uses_rdrand() { "RDRAND" } else { "TSC-seeded SplitMix64" });

    let cmdline = match info.cmdline() {
        Ok(c) => c,
        Err(_) => return param_error("the kernel command line is not valid UTF-8"),
    };
    if info.cmdline_truncated {
        return param_error("the kernel command line is longer than 4096 bytes");
    }
    println!("uniperf: command line: {cmdline}");
    if let Some(kind) = cmdline.split_whitespace().find_map(|w| w.strip_prefix(CRASH_PARAM)) {
        crash_on_purpose(kind);
    }
    let o = match parse_options(cmdline) {
        Ok(o) => o,
        Err(e) => return param_error(&e),
    };
    if o.help {
        console::write_str(&usage("uniperf", Target::Image, PLATFORM_NOTE));
        return exit::SUCCESS;
    }
    if o.version {
        console::write_str(&netstack::version_text(&machine.system_info()));
        return exit::SUCCESS;
    }
    platform::init_log(o.output.debug);
    let Some(ip) = o.net.ip else {
        return param_error("the image needs --ip ADDR/PREFIX for its NIC (e.g. --ip 198.18.0.2/24)");
    };

    let nic = match net::open(cmdline) {
        Ok(n) => n,
        Err(e) => {
            println!("uniperf: error - network device: {e}");
            return exit::FAILURE;
        }
    };
    let mac = EthernetAddress(nic.mac());
    println!("uniperf: nic: {} (MAC {mac})", nic.describe());
    HEAPSTATS.store(cmdline.split_whitespace().any(|w| w == HEAPSTATS_PARAM), Ordering::Relaxed);
    let wake = match cmdline.split_whitespace().filter_map(|w| w.strip_prefix(IDLE_PARAM)).next_back() {
        None | Some("halt") => {
            let (wake, mode) = platform::setup_interrupts(&nic);
            println!("uniperf: idle: {mode}");
            wake
        }
        Some("poll") => {
            println!("uniperf: idle: busy-poll ({IDLE_PARAM}poll)");
            None
        }
        Some(other) => return param_error(&alloc::format!("{IDLE_PARAM}{other}: expected halt or poll")),
    };
    let dev = match mtu::MtuLimit::new(nic, o.net.mtu) {
        Ok(d) => d,
        Err(e) => return param_error(&e),
    };
    // The probe is always on: the reports' TCP_INFO comes from it. It keeps samples only for
    // a flow log, and those come out of the same heap as the socket buffers: they get an
    // eighth of what is free (the sockets three eighths instead of half).
    let flowlog = o.flowlog.enabled().then(|| {
        let free = mem::heap_usage().1;
        let max_samples = (free / 8 / core::mem::size_of::<FlowSample>()).max(1024);
        let cfg = probe_config(&o.flowlog, max_samples);
        println!(
            "uniperf: flow log: probe on, {} (up to {max_samples} samples per test)",
            match o.flowlog.collect {
                Some((a, p)) => alloc::format!("sent to {a}:{p} after each test"),
                None => String::from("printed to the console after each test"),
            }
        );
        FlowLogOut { opts: o.flowlog.clone(), cfg }
    });
    let cfg = flowlog.as_ref().map_or(ProbeConfig::state_only(), |f| f.cfg);
    let dev = FlowProbe::new(dev, cfg).with_frame_clock(platform::frame_clock);
    run_roles(&o, dev, &mut machine, ip, entry_tsc, flowlog, wake)
}

/// The NIC behind `--mtu`: what the stack's flow probe wraps.
type ImageNic = mtu::MtuLimit<net::Nic>;

/// Where each test's flow log goes.
struct FlowLogOut {
    opts: FlowLogOptions,
    cfg: ProbeConfig,
}

/// How long one upload may take, connection and close included.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// Prints (`--flowlog console`) and/or sends (`--flowlog-collect`) the log of the test that
/// just ended; false if sending failed.
fn flowlog_out(
    out: &FlowLogOut,
    role: &'static str,
    test: u32,
    log: TestLog,
    stack: &mut Stack<ImageNic>,
    machine: &mut dyn Machine,
    platform: &mut dyn Platform,
) -> bool {
    let header = ShipHeader {
        role: String::from(role),
        test,
        format: out.opts.format,
        samples: log.samples.len() as u64,
        dropped: log.dropped,
    };
    if log.dropped > 0 {
        log::warn!(
            "flow log: test {test}: {} samples dropped (memory limit); use a larger --flowlog-interval \
             or more guest memory",
            log.dropped
        );
    }
    if out.opts.path.as_deref() == Some("console") {
        print_log(&header, &log.samples);
    }
    let Some((addr, port)) = out.opts.collect else {
        return true;
    };
    let mut r = [0u8; 2];
    machine.fill_random(&mut r);
    // Below the client role's 49152.. range and away from the iperf3 port.
    let local_port = 32768 + u16::from_le_bytes(r) % 16384;
    let to = Collector { endpoint: IpEndpoint::new(IpAddress::Ipv4(addr), port), local_port, timeout: UPLOAD_TIMEOUT };
    match netstack::flowlog::ship::ship(stack, machine, platform, &to, &header, &log.samples) {
        Ok(rep) => {
            let us = rep.transfer.total_micros().max(1);
            log::info!(
                "flow log: {role} test {test}: {} samples ({} bytes, {}) sent to {addr}:{port} in {}.{:03} s \
                 = {} samples/s, {} Mbit/s (connect {} ms, drain {} ms)",
                rep.samples,
                rep.bytes,
                format_name(header.format),
                us / 1_000_000,
                us / 1000 % 1000,
                rep.samples_per_sec(),
                rep.bytes * 8 / us,
                rep.connect.total_millis(),
                rep.drain.total_millis()
            );
            true
        }
        Err(e) => {
            log::error!("flow log of {role} test {test}: {e} (--flowlog console prints logs on the console)");
            false
        }
    }
}

/// The console fallback: the upload's header line, then the log, between marker lines.
fn print_log(header: &ShipHeader, samples: &[FlowSample]) {
    console::write_str("----- BEGIN UNIPERF FLOWLOG -----\n");
    console::write_str(&header.to_line());
    let _ = netstack::flowlog::ship::write_chunks(header.format, samples, 12 * 1024, |chunk| {
        console::write_bytes(chunk);
        Ok::<(), ()>(())
    });
    console::write_str("----- END UNIPERF FLOWLOG -----\n");
}

fn run_roles(
    o: &Options,
    dev: FlowProbe<ImageNic>,
    machine: &mut ImageMachine,
    ip: netstack::smoltcp::wire::Ipv4Cidr,
    entry_tsc: u64,
    flowlog: Option<FlowLogOut>,
    wake: Option<net::SharedQueues>,
) -> u8 {
    let mac = EthernetAddress(dev.inner().inner().mac());
    let ip_mtu = dev.inner().ip_mtu();
    let text = !o.output.json && !o.output.json_stream;
    let stamps = o.output.timestamps.as_deref().filter(|_| text);
    let mut platform = ImagePlatform::with_timestamps(stamps, machine.boot_unix()).with_wake(wake);
    let mut seed = [0u8; 8];
    machine.fill_random(&mut seed);
    let net = NetConfig { mac, ip, gateway: o.net.gateway };
    let mut stack = Stack::new(dev, &net, platform.now(), u64::from_le_bytes(seed));
    println!(
        "uniperf: net: {ip}{}, IP MTU {ip_mtu}; booted in {} ms",
        o.net.gateway.map(|g| alloc::format!(" via {g}")).unwrap_or_default(),
        clock::ticks_to_us(clock::ticks().wrapping_sub(entry_tsc)) / 1000
    );

    // Socket buffers of one test may take half of what is free (three eighths with a flow
    // probe, whose samples take an eighth); the rest is headroom for control sockets, reports
    // and heap fragmentation (with three quarters, an 11 MiB VM failed to find a contiguous
    // 4 MiB block). A test that cannot fit is refused, not allowed to exhaust the heap.
    let free = mem::heap_usage().1;
    let budget = if flowlog.is_some() { free / 8 * 3 } else { free / 2 };
    let setup = Setup { mss: stack.mss(), buffer_budget: budget };
    let heapstats = HEAPSTATS.load(Ordering::Relaxed);
    if heapstats {
        print_heap("start");
    }
    let ran = driver::run_options::<server::Server, client::Client, _>(
        o,
        &setup,
        &mut stack,
        machine,
        &mut platform,
        &mut |stack, machine, platform, role, test, log| {
            let shipped = match &flowlog {
                Some(out) => flowlog_out(out, role, test, log, stack, machine, platform),
                None => true,
            };
            if heapstats {
                print_heap(&alloc::format!("after {role} test {test}"));
            }
            shipped
        },
    );
    let mut code = match ran {
        Ok(true) => exit::SUCCESS,
        Ok(false) => exit::FAILURE,
        Err(e) => return param_error(&e),
    };
    let nic = stack.dev.inner().inner();
    if let Some(fault) = nic.fault() {
        println!("uniperf: error - the NIC stopped: {fault}");
        code = exit::FAILURE;
    }
    if o.output.verbose {
        let (used, free) = mem::heap_usage();
        println!("uniperf: nic: {}; heap {} KiB used, {} KiB free", nic.stats(), used / 1024, free / 1024);
        let (halts, nic_irqs, timer_irqs) = platform::idle_counts();
        println!("uniperf: idle: {halts} halts, woken by {nic_irqs} NIC and {timer_irqs} timer interrupts");
    }
    code
}

fn param_error(msg: &str) -> u8 {
    println!("uniperf: parameter error - {msg}");
    exit::FAILURE
}

/// The command line minus the driver's words, parsed and checked as the Linux CLI does, plus
/// what only the image rejects.
fn parse_options(cmdline: &str) -> Result<Options, String> {
    let words = split_cmdline(cmdline)?;
    let ours = words.iter().map(String::as_str).filter(|w| {
        !w.starts_with(CRASH_PARAM)
            && !w.starts_with(IDLE_PARAM)
            && *w != HEAPSTATS_PARAM
            && !DRIVER_PARAMS.iter().any(|p| w.starts_with(p))
    });
    let o = Options::parse(ours, Target::Image)?;
    o.validate()?;
    if o.help || o.version {
        return Ok(o);
    }
    if o.flowlog.path.as_deref().is_some_and(|p| p != "console") {
        return Err(String::from(
            "--flowlog: the image has no file system; use --flowlog console or --flowlog-collect ADDR:PORT",
        ));
    }
    Ok(o)
}

/// The failures `uniperf.crash=` asks for.
fn crash_on_purpose(kind: &str) {
    match kind {
        "panic" => panic!("uniperf.crash=panic on the command line"),
        "pagefault" => {
            // Far beyond anything mapped.
            let p = 0x0000_7000_0000_0000u64 as *const u64;
            // SAFETY: not safe at all; faulting is the point.
            let v = unsafe { core::ptr::read_volatile(p) };
            println!("uniperf: read {v} from an unmapped address?");
        }
        "stackoverflow" => {
            #[allow(unconditional_recursion)]
            fn recurse(depth: u64) -> u64 {
                let pad = core::hint::black_box([depth; 64]);
                recurse(depth + 1) + pad[(depth % 64) as usize]
            }
            println!("uniperf: {}", recurse(0));
        }
        other => println!("uniperf: ignoring unknown uniperf.crash={other}"),
    }
}

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::Relaxed) {
        console::write_str("\nuniperf: panic while panicking\n");
        exit::exit(exit::CRASH);
    }
    match info.location() {
        Some(l) => println!("\nuniperf: panic at {}:{}:{}: {}", l.file(), l.line(), l.column(), info.message()),
        None => println!("\nuniperf: panic: {}", info.message()),
    }
    exit::exit(exit::CRASH)
}
