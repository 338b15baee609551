pub mod lab;
pub mod ftpprobe;
pub mod capture;
pub mod tool;
