//! [`LocalStore`]: objects as files under a root directory.
//!
//! Key `a/b/c.pdf` is the file `<root>/a/b/c.pdf`, so an operator can browse and back up the
//! store with ordinary tools. Uploads are written to `<root>/.tmp~/<uuid>` and renamed into place
//! once complete and fsynced: a rename within one filesystem is atomic, so a reader sees the old
//! object or the new one, never a partial file. `~` can never appear in a key, so the scratch
//! directory cannot collide with an object.
//!
//! Limitation: a key cannot be both an object and a "directory" of other keys (`a` and `a/b`),
//! because a path cannot be both a file and a directory. S3 allows it; the server never makes
//! such keys. Such a `put` fails with [`StorageError::Io`]. Empty directories left by deletes are
//! not pruned: pruning would race with a concurrent `put` into the same directory.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::fs;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::{ByteStream, ObjectKey, ObjectStore, StorageError, collect_limited};

/// The scratch directory for uploads in progress, under the root.
const TMP_DIR: &str = ".tmp~";

/// How long a scratch file must have gone unwritten before [`LocalStore::new`] deletes it.
const STALE_SCRATCH: Duration = Duration::from_secs(60 * 60);

/// Read buffer for downloads: large enough that a multi-megabyte PDF takes few syscalls, small
/// enough that many concurrent downloads stay cheap.
const READ_CHUNK: usize = 64 * 1024;

/// Objects stored as files under a root directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    /// The root directory; every object path is under it.
    root: PathBuf,
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`.
    ///
    /// Blocking (a few filesystem calls): meant for start-up. Also removes scratch files that no
    /// upload has written to for an hour, left by a process that died mid-upload. Age,
    /// not ownership, decides, so a second store on the same root (another process, a test)
    /// never loses a live upload: an upload in progress keeps touching its file.
    pub fn new(root: PathBuf) -> Result<Self, StorageError> {
        let tmp = root.join(TMP_DIR);
        std::fs::create_dir_all(&tmp).map_err(StorageError::Io)?;
        remove_stale_scratch(&tmp);
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        // Safe to join: ObjectKey has no `..`, `.` or empty segments and is never absolute.
        self.root.join(key.as_str())
    }

    /// Opens the object's file for reading, with its size; NotFound if there is no regular file.
    async fn open(&self, key: &ObjectKey) -> Result<(fs::File, u64), StorageError> {
        let not_found = || StorageError::NotFound {
            key: key.to_string(),
        };
        let file = match fs::File::open(self.path_of(key)).await {
            Ok(file) => file,
            // NotADirectory: a prefix of the key is an object (`a` exists, `a/b` asked).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(not_found());
            }
            Err(e) => return Err(StorageError::Io(e)),
        };
        let meta = file.metadata().await.map_err(StorageError::Io)?;
        // A directory opens fine on Unix; it is a key prefix, not an object.
        if !meta.is_file() {
            return Err(not_found());
        }
        Ok((file, meta.len()))
    }
}

/// Removes the scratch file unless disarmed. Dropping it covers every early return and a
/// cancelled `put` future alike.
struct TempGuard {
    /// The scratch file; `None` once it has been renamed into place.
    path: Option<PathBuf>,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Blocking, but unlink is a single quick syscall and Drop cannot await.
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not remove upload scratch file");
            }
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &ObjectKey, mut body: ByteStream) -> Result<u64, StorageError> {
        let dest = self.path_of(key);
        let tmp = self
            .root
            .join(TMP_DIR)
            .join(uuid::Uuid::new_v4().simple().to_string());
        let mut guard = TempGuard {
            path: Some(tmp.clone()),
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await
            .map_err(StorageError::Io)?;

        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            file.write_all(&chunk).await.map_err(StorageError::Io)?;
            written += u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        }
        // tokio's File buffers one write internally: flush it, then fsync so the data is on
        // disk before the rename makes it visible (otherwise a crash can leave an empty file
        // under a key that looked written).
        file.flush().await.map_err(StorageError::Io)?;
        file.sync_all().await.map_err(StorageError::Io)?;
        drop(file);

        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).await.map_err(StorageError::Io)?;
        }
        fs::rename(&tmp, &dest).await.map_err(StorageError::Io)?;
        guard.path = None;

        // Make the rename itself durable. The object is already visible, so a failure here is
        // logged rather than returned: reporting failure for a stored object would be worse.
        if let Some(parent) = dest.parent() {
            let synced = async { fs::File::open(parent).await?.sync_all().await }.await;
            if let Err(e) = synced {
                tracing::warn!(dir = %parent.display(), error = %e, "could not fsync directory after upload");
            }
        }
        Ok(written)
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StorageError> {
        let (file, _) = self.open(key).await?;
        Ok(Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)))
    }

    async fn get_bytes(&self, key: &ObjectKey, max_bytes: u64) -> Result<Bytes, StorageError> {
        let (file, size) = self.open(key).await?;
        // Refuse on the stored size without reading anything.
        if size > max_bytes {
            return Err(StorageError::TooLarge { limit: max_bytes });
        }
        let body: ByteStream = Box::pin(ReaderStream::with_capacity(file, READ_CHUNK));
        collect_limited(body, max_bytes, Some(size)).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match fs::remove_file(self.path_of(key)).await {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(StorageError::Io(e)),
        }
    }

    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }
}

/// Best effort: a scratch file that cannot be removed costs only disk space, and must not stop
/// the server from starting.
fn remove_stale_scratch(tmp: &Path) {
    let entries = match std::fs::read_dir(tmp) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %tmp.display(), error = %e, "could not list upload scratch files");
            return;
        }
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| now.duration_since(modified).unwrap_or_default() > STALE_SCRATCH);
        if stale && let Err(e) = std::fs::remove_file(entry.path()) {
            tracing::warn!(path = %entry.path().display(), error = %e, "could not remove stale scratch file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn chunks(parts: Vec<Result<&'static [u8], io::Error>>) -> ByteStream {
        Box::pin(stream::iter(
            parts.into_iter().map(|p| p.map(Bytes::from_static)),
        ))
    }

    async fn scratch_entries(store: &LocalStore) -> usize {
        let mut dir = fs::read_dir(store.root().join(TMP_DIR))
            .await
            .expect("scratch dir exists");
        let mut n = 0;
        while dir.next_entry().await.expect("read scratch dir").is_some() {
            n += 1;
        }
        n
    }

    #[tokio::test]
    async fn failed_put_removes_its_scratch_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().join("store")).expect("open store");
        let key = ObjectKey::new("a/b").expect("key");
        let body = chunks(vec![Ok(b"abc"), Err(io::Error::other("boom"))]);
        let err = store.put(&key, body).await.expect_err("body failed");
        assert!(matches!(err, StorageError::Body(_)), "{err:?}");
        assert_eq!(scratch_entries(&store).await, 0);
    }

    #[tokio::test]
    async fn cancelled_put_removes_its_scratch_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().to_path_buf()).expect("open store");
        let key = ObjectKey::new("k").expect("key");
        let body: ByteStream =
            Box::pin(stream::iter([Ok(Bytes::from_static(b"abc"))]).chain(stream::pending()));
        let put = store.put(&key, body);
        // The body never ends, so the put cannot complete; dropping it is a client going away.
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(50), put).await;
        assert!(timed_out.is_err());
        assert_eq!(scratch_entries(&store).await, 0);
        assert!(matches!(
            store.get(&key).await,
            Err(StorageError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn new_clears_only_stale_scratch_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().to_path_buf()).expect("open store");
        let scratch = store.root().join(TMP_DIR);
        let stale = std::fs::File::create(scratch.join("stale")).expect("create stale");
        stale
            .set_modified(SystemTime::now() - STALE_SCRATCH - Duration::from_secs(60))
            .expect("age stale file");
        std::fs::write(scratch.join("fresh"), b"x").expect("write fresh");
        let store = LocalStore::new(dir.path().to_path_buf()).expect("reopen store");
        assert_eq!(scratch_entries(&store).await, 1);
        assert!(scratch.join("fresh").exists());
    }

    #[tokio::test]
    async fn prefix_of_an_object_is_not_an_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().to_path_buf()).expect("open store");
        let deep = ObjectKey::new("a/b").expect("key");
        store.put(&deep, chunks(vec![Ok(b"x")])).await.expect("put");
        let prefix = ObjectKey::new("a").expect("key");
        assert!(matches!(
            store.get(&prefix).await,
            Err(StorageError::NotFound { .. })
        ));
        let below_object = ObjectKey::new("a/b/c").expect("key");
        assert!(matches!(
            store.get(&below_object).await,
            Err(StorageError::NotFound { .. })
        ));
        store
            .delete(&below_object)
            .await
            .expect("delete below an object");
    }
}
