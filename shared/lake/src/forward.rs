//! [`forward_object_store!`](crate::forward_object_store): an `ObjectStore` that wraps another and
//! changes only some of its methods, with every other method passed to the inner store by name.
//!
//! The trait has defaults (`get_ranges`, `list_with_offset`, `rename_opts`) that work but silently
//! lose what the inner store does better: a wrapper that forgot `list_with_offset` turned S3's
//! start-after listing of a Delta log into a listing of the whole log, filtered client-side (stop
//! 29). A wrapper written with this macro names each method it forwards, and every forwarded
//! method is the same one-line call in every wrapper (the lake's and the API's stores, test stores).

/// Names the macro's expansion uses, so that a crate using it needs none of them itself.
#[doc(hidden)]
pub mod __rt {
    pub use async_trait::async_trait;
    pub use bytes::Bytes;
    pub use futures::stream::BoxStream;
    pub use object_store;
}

/// Implements `object_store::ObjectStore` for a wrapper type: the methods written out in the
/// block as they are, plus each method named in `forward(field) [...]` passed on to `self.field`
/// (any `ObjectStore`, typically `Arc<dyn ObjectStore>`).
///
/// ```ignore
/// dials_lake::forward_object_store! {
///     impl ObjectStore for Counting {
///         forward(inner) [put_opts, put_multipart_opts, get_ranges, delete_stream, list,
///                         list_with_offset, list_with_delimiter, copy_opts, rename_opts];
///         async fn get_opts(&self, location: &Path, options: GetOptions)
///             -> object_store::Result<GetResult> {
///             self.count();
///             self.inner.get_opts(location, options).await
///         }
///     }
/// }
/// ```
#[macro_export]
macro_rules! forward_object_store {
    (impl ObjectStore for $ty:ty {
        forward($field:ident) [$($name:ident),* $(,)?];
        $($own:tt)*
    }) => {
        $crate::forward_object_store!(@munch $ty, $field, [$($own)*], [$($name)*]);
    };
    (@munch $ty:ty, $field:ident, [$($done:tt)*], []) => {
        #[$crate::forward::__rt::async_trait]
        impl $crate::forward::__rt::object_store::ObjectStore for $ty {
            $($done)*
        }
    };
    (@munch $ty:ty, $f:ident, [$($done:tt)*], [put_opts $($rest:ident)*]) => {
        $crate::forward_object_store!(@munch $ty, $f, [$($done)*
            async fn put_opts(
                &self,
                location: &$crate::forward::__rt::object_store::path::Path,
                payload: $crate::forward::__rt::object_store::PutPayload,
                opts: $crate::forward::__rt::object_store::PutOptions,
            ) -> $crate::forward::__rt::object_store::Result<$crate::forward::__rt::object_store::PutResult> {
                self.$f.put_opts(location, payload, opts).await
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $f:ident, [$($done:tt)*], [put_multipart_opts $($rest:ident)*]) => {
        $crate::forward_object_store!(@munch $ty, $f, [$($done)*
            async fn put_multipart_opts(
                &self,
                location: &$crate::forward::__rt::object_store::path::Path,
                opts: $crate::forward::__rt::object_store::PutMultipartOptions,
            ) -> $crate::forward::__rt::object_store::Result<
                Box<dyn $crate::forward::__rt::object_store::MultipartUpload>,
            > {
                self.$f.put_multipart_opts(location, opts).await
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $f:ident, [$($done:tt)*], [get_opts $($rest:ident)*]) => {
        $crate::forward_object_store!(@munch $ty, $f, [$($done)*
            async fn get_opts(
                &self,
                location: &$crate::forward::__rt::object_store::path::Path,
                options: $crate::forward::__rt::object_store::GetOptions,
            ) -> $crate::forward::__rt::object_store::Result<$crate::forward::__rt::object_store::GetResult> {
                self.$f.get_opts(location, options).await
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $f:ident, [$($done:tt)*], [get_ranges $($rest:ident)*]) => {
        $crate::forward_object_store!(@munch $ty, $f, [$($done)*
            async fn get_ranges(
                &self,
                location: &$crate::forward::__rt::object_store::path::Path,
                ranges: &[::std::ops::Range<u64>],
            ) -> $crate::forward::__rt::object_store::Result<Vec<$crate::forward::__rt::Bytes>> {
                self.$f.get_ranges(location, ranges).await
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $f:ident, [$($done:tt)*], [delete_stream $($rest:ident)*]) => {
        $crate::forward_object_store!(@munch $ty, $f, [$($done)*
            fn delete_stream(
                &self,
                locations: $crate::forward::__rt::BoxStream<
                    'static,
                    $crate::forward::__rt::object_store::Result<$crate::forward::__rt::object_store::path::Path>,
                >,
            ) -> $crate::forward::__rt::BoxStream<
                'static,
                $crate::forward::__rt::object_store::Result<$crate::forward::__rt::object_store::path::Path>,
            > {
                self.$f.delete_stream(locations)
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $f:ident, [$($done:tt)*], [list $($rest:ident)*]) => {
        $crate::forward_object_store!(@munch $ty, $f, [$($done)*
            fn list(
                &self,
                prefix: Option<&$crate::forward::__rt::object_store::path::Path>,
            ) -> $crate::forward::__rt::BoxStream<
                'static,
                $crate::forward::__rt::object_store::Result<$crate::forward::__rt::object_store::ObjectMeta>,
            > {
                self.$f.list(prefix)
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $f:ident, [$($done:tt)*], [list_with_offset $($rest:ident)*]) => {
        $crate::forward_object_store!(@munch $ty, $f, [$($done)*
            fn list_with_offset(
                &self,
                prefix: Option<&$crate::forward::__rt::object_store::path::Path>,
                offset: &$crate::forward::__rt::object_store::path::Path,
            ) -> $crate::forward::__rt::BoxStream<
                'static,
                $crate::forward::__rt::object_store::Result<$crate::forward::__rt::object_store::ObjectMeta>,
            > {
                self.$f.list_with_offset(prefix, offset)
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $f:ident, [$($done:tt)*], [list_with_delimiter $($rest:ident)*]) => {
        $crate::forward_object_store!(@munch $ty, $f, [$($done)*
            async fn list_with_delimiter(
                &self,
                prefix: Option<&$crate::forward::__rt::object_store::path::Path>,
            ) -> $crate::forward::__rt::object_store::Result<$crate::forward::__rt::object_store::ListResult> {
                self.$f.list_with_delimiter(prefix).await
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $f:ident, [$($done:tt)*], [copy_opts $($rest:ident)*]) => {
        $crate::forward_object_store!(@munch $ty, $f, [$($done)*
            async fn copy_opts(
                &self,
                from: &$crate::forward::__rt::object_store::path::Path,
                to: &$crate::forward::__rt::object_store::path::Path,
                options: $crate::forward::__rt::object_store::CopyOptions,
            ) -> $crate::forward::__rt::object_store::Result<()> {
                self.$f.copy_opts(from, to, options).await
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $f:ident, [$($done:tt)*], [rename_opts $($rest:ident)*]) => {
        $crate::forward_object_store!(@munch $ty, $f, [$($done)*
            async fn rename_opts(
                &self,
                from: &$crate::forward::__rt::object_store::path::Path,
                to: &$crate::forward::__rt::object_store::path::Path,
                options: $crate::forward::__rt::object_store::RenameOptions,
            ) -> $crate::forward::__rt::object_store::Result<()> {
                self.$f.rename_opts(from, to, options).await
            }
        ], [$($rest)*]);
    };
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStore, ObjectStoreExt};

    /// Counts the listings that start after an offset; forwards everything else.
    #[derive(Debug)]
    struct Offsets {
        inner: Arc<dyn ObjectStore>,
        from_offset: AtomicUsize,
    }

    impl std::fmt::Display for Offsets {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Offsets({})", self.inner)
        }
    }

    crate::forward_object_store! {
        impl ObjectStore for Offsets {
            forward(inner) [put_opts, put_multipart_opts, get_opts, get_ranges, delete_stream,
                            list, list_with_delimiter, copy_opts, rename_opts];
            fn list_with_offset(
                &self,
                prefix: Option<&Path>,
                offset: &Path,
            ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
                self.from_offset.fetch_add(1, Ordering::Relaxed);
                self.inner.list_with_offset(prefix, offset)
            }
        }
    }

    #[tokio::test]
    async fn forwarded_methods_reach_the_inner_store_and_own_ones_run() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let s = Offsets {
            inner: inner.clone(),
            from_offset: AtomicUsize::new(0),
        };
        for v in 0..3 {
            let p = Path::from(format!("_delta_log/{v:020}.json"));
            s.put(&p, format!("entry {v}").into()).await.expect("put");
        }
        // Forwarded: the bytes are in the inner store, read back through the wrapper.
        let got = s
            .get(&Path::from(format!("_delta_log/{:020}.json", 1)))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&got[..], b"entry 1");
        let ranges = s
            .get_ranges(
                &Path::from(format!("_delta_log/{:020}.json", 2)),
                &[0..5, 6..7],
            )
            .await
            .expect("ranges");
        assert_eq!(ranges, vec![&b"entry"[..], &b"2"[..]]);
        let all: Vec<_> = s
            .list(Some(&Path::from("_delta_log")))
            .try_collect()
            .await
            .expect("list");
        assert_eq!(all.len(), 3);
        s.copy(
            &Path::from(format!("_delta_log/{:020}.json", 0)),
            &Path::from("copied"),
        )
        .await
        .expect("copy");
        assert!(inner.head(&Path::from("copied")).await.is_ok());
        // The wrapper's own method: the listing from an offset goes through it (not the trait's
        // default, which lists everything) and gets only what follows the offset.
        let after: Vec<_> = s
            .list_with_offset(
                Some(&Path::from("_delta_log")),
                &Path::from(format!("_delta_log/{:020}.json", 0)),
            )
            .try_collect()
            .await
            .expect("list from offset");
        assert_eq!(after.len(), 2);
        assert_eq!(s.from_offset.load(Ordering::Relaxed), 1);
    }
}
