pub mod lab;
pub mod ftpprobe;
pub mod capture;
