//! `bench`: benchmark tools for rumor (see `bench::Cli`).

#[tokio::main]
async fn main() {
    let cli = client::cli::parse_args::<bench::Cli>();
    if let Err(error) = bench::run(cli).await {
        eprintln!("bench: error: {error}");
        std::process::exit(error.exit_code());
    }
}
