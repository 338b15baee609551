pub mod capture;
pub mod ftpprobe;
pub mod hostkeys;
pub mod lab;
pub mod tool;
pub mod sockets;
