"""The database side: the connection service, the store (every query squad makes), the group
commit that batches sign-ups, the failover retry and the stored documents' shapes."""
