//! A server the closed loop can stop and start again on its own data over a fault window (Prometheus, Redis).

pub(crate) trait Restartable {
    fn is_stopped(&self) -> bool;
    fn stop(&mut self);
    fn resume(&mut self) -> Result<(), String>;
}
