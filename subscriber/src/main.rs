//! `subscriber`: prints the messages of a rumor topic (see `subscriber::Cli`).

#[tokio::main]
async fn main() {
    let cli = client::cli::parse_args::<subscriber::Cli>();
    if let Err(error) = subscriber::run(cli).await {
        eprintln!("subscriber: error: {error:#}");
        std::process::exit(1);
    }
}
