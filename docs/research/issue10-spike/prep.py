"""Cache the instance-normalised epochs of /tmp/dnew/store as one float16 array + index."""
import json, numpy as np, torch
from relpos.sleep.store.reader import EpochStore
from relpos.sleep.preprocess import instance_norm
s = EpochStore('/tmp/dnew/store')
out = np.lib.format.open_memmap('/tmp/research/norm.npy', mode='w+', dtype=np.float16, shape=(len(s), 6, 3000))
for a in range(0, len(s), 1000):
    x = torch.from_numpy(s.read(np.arange(a, min(a + 1000, len(s)))).astype(np.float32))
    out[a:a + len(x)] = instance_norm(x, 1e-6, inplace=True).numpy().astype(np.float16)
out.flush()
np.savez('/tmp/research/index.npz', labels=s.labels, record_index=s.record_index, epoch_index=s.epoch_index,
         subject_index=s.subject_index, subjects=np.asarray(s.subjects))
print(s, 'norm eps', s.pipeline.normalize)
