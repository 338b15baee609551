pub mod capture;
pub mod ftpprobe;
pub mod lab;
pub mod tool;
