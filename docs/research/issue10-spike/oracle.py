"""Ceiling on |Δt| / Δt identifiability from stage labels alone: group-mean predictor given
(stage of ref epoch, stage of target epoch), k consecutive epochs, random 1-s windows."""
import json, numpy as np
I = np.load('/tmp/research/index.npz'); split = json.load(open('/tmp/bl/sleep-full/splits.json'))
subs = list(I['subjects']); m = np.isin(I['subject_index'], [subs.index(s) for s in split['test']])
rng = np.random.default_rng(0)
import sys
for k in [int(v) for v in sys.argv[1:]] or (1, 5, 10, 20):
    n = len(m); ok = np.ones(n, bool)
    for j in range(k):
        idx = np.minimum(np.arange(n) + j, n - 1)
        ok &= (np.arange(n) + j < n) & m[idx] & (I['record_index'][idx] == I['record_index']) & (I['epoch_index'][idx] == I['epoch_index'] + j) & (I['labels'][idx] >= 0)
    st = np.flatnonzero(ok)[rng.integers(0, ok.sum(), 200000)]
    L = k * 3000; cr, ct = rng.uniform(50, L - 50, (2, len(st)))
    er, et = (cr // 3000).astype(int), (ct // 3000).astype(int)
    sr, stt = I['labels'][st + er], I['labels'][st + et]
    d = np.abs(ct - cr); key = sr * 5 + stt
    for name, y in (('absdt', d), ('dt', ct - cr)):
        mu = np.bincount(key, y, 25) / np.maximum(np.bincount(key, None, 25), 1)
        print(k, name, 'resid/const var ratio %.3f' % (np.var(y - mu[key]) / np.var(y)), 'same-stage frac %.2f' % (sr == stt).mean())
