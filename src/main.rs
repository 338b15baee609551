//! The binary: everything lives in the library; see `ftpssh::cli`.
fn main() {
    std::process::exit(ftpssh::cli::main());
}
