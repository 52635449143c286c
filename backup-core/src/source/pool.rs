//! One connection pool for every engine: a fixed set of connections (a snapshot's workers, a
//! restore's loaders), each used by one task at a time, so that the engines fail alike when
//! the pool is gone: a checkout from a closed or emptied pool is [`Error::Cancelled`] (the
//! operation is ending; exit 130), in MySQL as in PostgreSQL.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// A fixed set of connections, each lent to one task at a time.
pub(crate) struct Pool<C> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool { inner: self.inner.clone() }
    }
}

struct Inner<C> {
    free: Mutex<Vec<C>>,
    sem: Arc<Semaphore>,
    size: usize,
}

/// A connection borrowed from a [`Pool`]; goes back on drop (or is dropped, once the pool is
/// closed).
pub(crate) struct PoolGuard<C> {
    conn: Option<C>,
    pool: Arc<Inner<C>>,
    _permit: OwnedSemaphorePermit,
}

impl<C> Pool<C> {
    pub(crate) fn new(conns: Vec<C>) -> Self {
        let size = conns.len();
        Pool { inner: Arc::new(Inner { free: Mutex::new(conns), sem: Arc::new(Semaphore::new(size)), size }) }
    }

    /// Waits for a free connection. A closed pool, or (never while the pool is open) one with
    /// no connection left, is [`Error::Cancelled`]: the operation it belonged to is ending.
    pub(crate) async fn get(&self) -> Result<PoolGuard<C>> {
        let permit = self
            .inner
            .sem
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Cancelled("connection pool closed".into()))?;
        let conn =
            self.inner.free.lock().map_err(|_| Error::Cancelled("connection pool poisoned".into()))?.pop();
        match conn {
            Some(c) => Ok(PoolGuard { conn: Some(c), pool: self.inner.clone(), _permit: permit }),
            None => Err(Error::Cancelled("connection pool empty".into())),
        }
    }

    /// Connections in the pool.
    pub(crate) fn size(&self) -> usize {
        self.inner.size
    }

    /// Closes the pool and hands out the connections that are free (later checkouts fail;
    /// connections still lent are dropped when they come back).
    pub(crate) fn take_all(&self) -> Vec<C> {
        self.inner.sem.close();
        self.inner.free.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }

    /// Waits until every connection is back, then closes the pool and drops them all.
    pub(crate) async fn close(&self) {
        if let Ok(all) = self.inner.sem.clone().acquire_many_owned(self.inner.size as u32).await {
            all.forget();
        }
        drop(self.take_all());
    }
}

impl<C> Deref for PoolGuard<C> {
    type Target = C;
    fn deref(&self) -> &C {
        // Invariant: `conn` is Some from checkout until drop.
        self.conn.as_ref().unwrap_or_else(|| unreachable!("pool guard without a connection"))
    }
}

impl<C> DerefMut for PoolGuard<C> {
    fn deref_mut(&mut self) -> &mut C {
        // Invariant: `conn` is Some from checkout until drop.
        self.conn.as_mut().unwrap_or_else(|| unreachable!("pool guard without a connection"))
    }
}

impl<C> Drop for PoolGuard<C> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take()
            && !self.pool.sem.is_closed()
            && let Ok(mut v) = self.pool.free.lock()
        {
            v.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[tokio::test]
    async fn lends_each_connection_to_one_task_and_a_closed_pool_is_a_cancellation() {
        let pool = Pool::new(vec![1u32, 2]);
        let mut a = pool.get().await.unwrap();
        let b = pool.get().await.unwrap();
        assert_ne!(*a, *b);
        *a += 10;
        drop(a);
        let again = pool.get().await.unwrap();
        assert!(*again == 11 || *again == 12, "{}", *again);
        drop((again, b));
        assert_eq!(pool.size(), 2);
        assert_eq!(pool.take_all().len(), 2);
        // Exit 130 for every engine (MySQL and PostgreSQL both use this pool).
        let e = pool.get().await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
        let empty: Pool<u32> = Pool::new(Vec::new());
        empty.close().await;
        assert_eq!(empty.get().await.err().unwrap().kind(), ErrorKind::Cancelled);
    }
}
