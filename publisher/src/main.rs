//! `publisher`: publishes messages to a rumor topic (see `publisher::Cli`).

#[tokio::main]
async fn main() {
    let cli = client::cli::parse_args::<publisher::Cli>();
    if let Err(error) = publisher::run(cli).await {
        eprintln!("publisher: error: {error:#}");
        std::process::exit(1);
    }
}
