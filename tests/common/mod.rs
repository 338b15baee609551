pub mod capture;
pub mod fakeftp;
pub mod ftpprobe;
pub mod hostkeys;
pub mod lab;
pub mod sockets;
pub mod tool;
pub mod tunnel;
