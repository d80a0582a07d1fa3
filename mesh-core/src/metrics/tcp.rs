use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Labels;
use super::labels::CloseLabels;
use crate::classify::Class;

/// Linkerd's transport metrics: `tcp_open_total`, `tcp_close_total` (with `classification`),
/// `tcp_open_connections`, `tcp_read_bytes_total`, `tcp_write_bytes_total`.
#[derive(Clone, Debug)]
pub struct TcpMetrics {
    families: Arc<TcpFamilies>,
}

#[derive(Debug)]
struct TcpFamilies {
    open: Family<Labels, Counter>,
    close: Family<CloseLabels, Counter>,
    open_now: Family<Labels, Gauge>,
    read: Family<Labels, Counter>,
    write: Family<Labels, Counter>,
}

impl TcpMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let f = TcpFamilies {
            open: Family::default(),
            close: Family::default(),
            open_now: Family::default(),
            read: Family::default(),
            write: Family::default(),
        };
        registry.register("tcp_open", "Connections opened", f.open.clone());
        registry.register("tcp_close", "Connections closed", f.close.clone());
        registry.register(
            "tcp_open_connections",
            "Connections open now",
            f.open_now.clone(),
        );
        registry.register(
            "tcp_read_bytes",
            "Bytes read from connections",
            f.read.clone(),
        );
        registry.register(
            "tcp_write_bytes",
            "Bytes written to connections",
            f.write.clone(),
        );
        Self {
            families: Arc::new(f),
        }
    }

    /// The handles for one target's connections, resolved once.
    pub fn sensor(&self, labels: &Labels) -> TcpSensor {
        let f = &self.families;
        let close = |class| {
            f.close
                .get_or_create(&CloseLabels {
                    target: labels.clone(),
                    class,
                })
                .clone()
        };
        TcpSensor(Arc::new(SensorHandles {
            open: f.open.get_or_create(labels).clone(),
            open_now: f.open_now.get_or_create(labels).clone(),
            close_ok: close(Class::Success),
            close_err: close(Class::Failure),
            read: f.read.get_or_create(labels).clone(),
            write: f.write.get_or_create(labels).clone(),
        }))
    }
}

/// Counts one target's connections; [`TcpSensor::wrap`] each connection.
#[derive(Clone, Debug)]
pub struct TcpSensor(Arc<SensorHandles>);

#[derive(Debug)]
struct SensorHandles {
    open: Counter,
    open_now: Gauge,
    close_ok: Counter,
    close_err: Counter,
    read: Counter,
    write: Counter,
}

impl TcpSensor {
    /// Counts `io` as opened now, its bytes as they pass, and its close when dropped (a failure
    /// if any read or write failed).
    pub fn wrap<IO>(&self, io: IO) -> SensorIo<IO> {
        self.0.open.inc();
        self.0.open_now.inc();
        SensorIo {
            io,
            sensor: Guard {
                handles: self.0.clone(),
                failed: false,
            },
        }
    }
}

#[derive(Debug)]
struct Guard {
    handles: Arc<SensorHandles>,
    failed: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.handles.open_now.dec();
        if self.failed {
            self.handles.close_err.inc();
        } else {
            self.handles.close_ok.inc();
        }
    }
}

pin_project! {
    /// A connection whose traffic is counted. See [`TcpSensor::wrap`].
    #[derive(Debug)]
    pub struct SensorIo<IO> {
        #[pin]
        io: IO,
        sensor: Guard,
    }
}

impl<IO> SensorIo<IO> {
    /// The connection.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }
}

impl<IO: AsyncRead> AsyncRead for SensorIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.io.poll_read(cx, buf);
        match &res {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                this.sensor.handles.read.inc_by(n as u64);
            }
            Poll::Ready(Err(_)) => this.sensor.failed = true,
            Poll::Pending => {}
        }
        res
    }
}

impl<IO: AsyncWrite> AsyncWrite for SensorIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.io.poll_write(cx, buf);
        count_write(this.sensor, &res);
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.io.poll_write_vectored(cx, bufs);
        count_write(this.sensor, &res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let res = this.io.poll_flush(cx);
        if let Poll::Ready(Err(_)) = res {
            this.sensor.failed = true;
        }
        res
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

fn count_write(sensor: &mut Guard, res: &Poll<io::Result<usize>>) {
    match res {
        Poll::Ready(Ok(n)) => {
            sensor.handles.write.inc_by(*n as u64);
        }
        Poll::Ready(Err(_)) => sensor.failed = true,
        Poll::Pending => {}
    }
}
