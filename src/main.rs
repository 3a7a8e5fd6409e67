fn main() -> std::process::ExitCode {
    uniperf::cli::main()
}
