"""Issue-10 pretext spike: pretrain a small ViT-1D with a PART variant on k consecutive epochs,
score held-out pretext error / constant baseline per component, then linear-probe sleep staging.

Uses the public pieces: relpos.nn.vit.ViT, CrossAttentionHead, RandomWindows, Grid, extract,
sample_pairs, relative_targets, sincos_encoding. Data: /tmp/research/norm.npy (prep.py).
"""
import argparse, json, math, time
import numpy as np, torch
from torch import nn
from einops import rearrange
from relpos.nn.vit import ViT, sincos_encoding
from relpos.nn.heads import CrossAttentionHead
from relpos.core.samplers import RandomWindows, Grid
from relpos.core.extract import extract
from relpos.core.spans import sample_pairs, relative_targets, gather_tokens

p = argparse.ArgumentParser()
p.add_argument('--name', required=True)
p.add_argument('--k', type=int, default=1)            # consecutive 30-s epochs per example
p.add_argument('--win', default='100')                # window samples: '100' or 'lo,hi' (resized to 100)
p.add_argument('--target', default='dt')              # dt | absdt | dt_log (Δt + log size ratio)
p.add_argument('--pos', default='none')               # none | sincos
p.add_argument('--pos_drop', type=float, default=0.2)
p.add_argument('--steps', type=int, default=800)
p.add_argument('--N', type=int, default=40)
p.add_argument('--M', type=int, default=128)
p.add_argument('--B', type=int, default=32)
p.add_argument('--lr', type=float, default=1e-3)
p.add_argument('--seed', type=int, default=0)
p.add_argument('--threads', type=int, default=1)
p.add_argument('--stem', default='linear')            # linear | conv
p.add_argument('--nll', action='store_true')
p.add_argument('--tokennorm', action='store_true')  # zero-mean unit-std per token and channel
p.add_argument('--noisecheck', action='store_true')  # also score the pretext on scale-free 1/f noise
p.add_argument('--bandlimit', type=int, default=0)  # >0: anti-aliased tokens, keep only rfft bins <= this (cycles per token)          # Gaussian NLL with predicted log-variance
a = p.parse_args()
if a.name.startswith('rand'):
    a.steps = 0  # random-init probe baseline
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
T0 = time.time()

X = np.load('/tmp/research/norm.npy', mmap_mode='r')
X = np.ascontiguousarray(X)  # ~570 MB float16 in RAM
I = np.load('/tmp/research/index.npz')
subjects = list(I['subjects'])
split = json.load(open('/tmp/bl/sleep-full/splits.json'))
sidx = {s: i for i, s in enumerate(subjects)}

def subj_mask(names):
    return np.isin(I['subject_index'], [sidx[s] for s in names if s in sidx])

def seq_starts(mask, k):
    """Global indices i such that epochs i..i+k-1 are one record, consecutive epoch numbers, in mask."""
    n = len(mask)
    ok = np.ones(n, bool)
    for j in range(k):
        idx = np.arange(n) + j
        valid = idx < n
        idx = np.minimum(idx, n - 1)
        ok &= valid & mask[idx] & (I['record_index'][idx] == I['record_index']) & \
              (I['epoch_index'][idx] == I['epoch_index'] + j)
    return np.flatnonzero(ok)

def batch_seq(starts, rng, B, k):
    st = starts[rng.integers(0, len(starts), B)]
    x = torch.from_numpy(X[st[:, None] + np.arange(k)].astype(np.float32))  # (B, k, C, S)
    return rearrange(x, 'b k c s -> b c (k s)')

extent = a.k * 3000
win = tuple(float(v) for v in a.win.split(',')) if ',' in a.win else float(a.win)
sampler = RandomWindows(win, a.N)
nominal = math.sqrt(win[0] * win[1]) if isinstance(win, tuple) else win
DT_NORM = 0.4 * extent / nominal   # Δt (in reference windows) / DT_NORM has ~unit variance
scale = 'log' if a.target == 'dt_log' else None
names = ['dt', 'log_s'] if scale else ['absdt' if a.target == 'absdt' else 'dt']
out_dim = len(names)

class ConvStem(nn.Module):
    """(B, N, C*100) -> (B, N, dim): two strided 1-D convs per token, then mean pool + linear."""
    def __init__(self, C=6, dim=64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(C, 32, 7, 2, 3), nn.GELU(), nn.Conv1d(32, 64, 5, 2, 2), nn.GELU(),
                                 nn.Conv1d(64, 64, 5, 2, 2), nn.GELU())
        self.proj = nn.Linear(64 * 2, dim)
    def forward(self, t):
        b, n = t.shape[:2]
        h = self.net(rearrange(t, 'b n (c s) -> (b n) c s', c=6))
        h = torch.cat([h.mean(-1), h.std(-1)], -1)
        return rearrange(self.proj(h), '(b n) d -> b n d', b=b)

enc = ViT(token_dim=600, dim=64, depth=2, heads=4, pos_embed='none')
if a.stem == 'conv':
    enc.embed = ConvStem()
head = CrossAttentionHead(64, out_dim * (2 if a.nll else 1), heads=4)

def tokens_of(x, spans):
    """extract -> (B, N, C, 100). With --bandlimit F: extract at 400 samples, keep rfft bins <= F
    (F cycles per token), resample to 100: every token has the same band whatever its scale, so
    the scale cannot be read from filter edges or aliasing, only from the shape of the rhythms."""
    if not a.bandlimit:
        t = extract(x, spans, 100)
    else:
        t = torch.fft.rfft(extract(x, spans, 400), dim=-1)[..., : a.bandlimit + 1]
        t = torch.fft.irfft(t, n=100, dim=-1) * (100 / 400)
    if a.tokennorm:
        t = t - t.mean(-1, keepdim=True)
        t = t / (t.std(-1, keepdim=True) + 1e-6)
    return t

def encode(tokens, spans, keep=None):
    """tokens (B, N, C, 100) -> cls (B, d), feats (B, N, d); sincos of centres (1 s units) * keep."""
    x = enc.embed(rearrange(tokens, 'b n c s -> b n (c s)'))
    if a.pos == 'sincos':
        pos = sincos_encoding(spans.centre / 100.0, 64)
        if keep is not None:
            pos = pos * keep[..., None]
        x = x + pos
    x = torch.cat([enc.cls_token.expand(x.shape[0], -1, -1), x], 1)
    for blk in enc.blocks:
        x = blk(x)
    x = enc.norm(x)
    return x[:, 0], x[:, 1:]

def targets(spans, pairs):
    t = relative_targets(spans, pairs, scale)
    t = t.clone()
    t[..., 0] = t[..., 0] / DT_NORM
    if a.target == 'absdt':
        t = t.abs()
    return t

def step_batch(x, g):
    spans = sampler((x.shape[-1],), x.shape[0], generator=g)
    tok = tokens_of(x, spans)
    keep = (torch.rand(x.shape[0], a.N, generator=g) >= a.pos_drop).float() if a.pos == 'sincos' else None
    pairs = sample_pairs(x.shape[0], a.N, a.M, generator=g)
    _, f = encode(tok, spans, keep)
    out = head(f, pairs)
    tgt = targets(spans, pairs)
    dropped_tgt = None if keep is None else (gather_tokens(keep[..., None], pairs[..., 1])[..., 0] == 0)
    return out, tgt, dropped_tgt

def loss_fn(out, tgt):
    if a.nll:
        mu, logv = out[..., :out_dim], out[..., out_dim:].clamp(-6, 6)
        return (0.5 * ((mu - tgt) ** 2 * torch.exp(-logv) + logv)).mean(), mu
    return ((out - tgt) ** 2).mean(), out

mask_pre, mask_test, mask_ft = subj_mask(split['pretrain']), subj_mask(split['test']), subj_mask(split['finetune'])
tr_starts, te_starts = seq_starts(mask_pre, a.k), seq_starts(mask_test, a.k)
params = list(enc.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.05)
warm = max(1, a.steps // 10)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1, s / max(1, a.steps)))))
rng = np.random.default_rng(a.seed)
g = torch.Generator().manual_seed(a.seed)
losses = []
t_train = time.time()
for s in range(a.steps):
    enc.train(); head.train()
    x = batch_seq(tr_starts, rng, a.B, a.k)
    out, tgt, _ = step_batch(x, g)
    loss, _ = loss_fn(out, tgt)
    opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sched.step()
    losses.append(loss.item())
    if s % 200 == 0 or s == a.steps - 1:
        print(f'step {s} loss {np.mean(losses[-50:]):.4f} t={time.time()-t_train:.0f}s', flush=True)
train_s = time.time() - t_train

# held-out pretext error on test subjects: 20 fixed batches (same draws for every variant of one k)
res = {'args': vars(a), 'train_s': train_s, 'n_train_seq': len(tr_starts)}
enc.eval(); head.eval()
erng, eg = np.random.default_rng(1234), torch.Generator().manual_seed(1234)
P, Tg, Dm = [], [], []
with torch.no_grad():
    for _ in range(20):
        x = batch_seq(te_starts, erng, 32, a.k)
        out, tgt, dm = step_batch(x, eg)
        _, mu = loss_fn(out, tgt)
        P.append(mu); Tg.append(tgt)
        if dm is not None: Dm.append(dm)
P, Tg = torch.cat(P), torch.cat(Tg)
def ratios(sel):
    r = {}
    for i, nm in enumerate(names):
        pr, tg = P[..., i][sel], Tg[..., i][sel]
        mse = ((pr - tg) ** 2).mean().item()
        r[nm] = {'mse': mse, 'zero': (tg ** 2).mean().item(), 'const': tg.var().item(),
                 'ratio_zero': mse / (tg ** 2).mean().item(), 'ratio_const': mse / tg.var().item()}
    return r
res['pretext_all'] = ratios(torch.ones_like(Tg[..., 0], dtype=torch.bool))
if Dm:
    res['pretext_dropped_tgt'] = ratios(torch.cat(Dm))
print(json.dumps({k: v for k, v in res.items() if k.startswith('pretext')}, indent=1))

if a.noisecheck:
    # scale-free control: 1/f^beta noise, bandpassed 0.3-30 Hz like the store, instance-normalised
    for beta in (1.0, 2.0):
        ng = torch.Generator().manual_seed(99)
        P2, T2 = [], []
        with torch.no_grad():
            for _ in range(10):
                f = torch.fft.rfftfreq(extent, 1 / 100)
                amp = torch.where((f >= 0.3) & (f <= 30), f.clamp_min(0.3) ** (-beta / 2), torch.zeros(()))
                spec = torch.complex(torch.randn(32, 6, len(f), generator=ng), torch.randn(32, 6, len(f), generator=ng)) * amp
                x = torch.fft.irfft(spec, n=extent)
                x = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)
                out, tgt, _ = step_batch(x, ng)
                _, mu = loss_fn(out, tgt)
                P2.append(mu); T2.append(tgt)
        P2, T2 = torch.cat(P2), torch.cat(T2)
        res[f'noise_beta{beta:g}'] = {nm: (((P2[..., i] - T2[..., i]) ** 2).mean() / (T2[..., i] ** 2).mean()).item() for i, nm in enumerate(names)}
        print('NOISE', beta, res[f'noise_beta{beta:g}'])

# linear probe: one 30-s epoch, 30 on-grid 1-s tokens (centres as positions for sincos, none dropped)
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.metrics import cohen_kappa_score, f1_score
grid = Grid(100)
def feats(mask):
    idx = np.flatnonzero(mask & (I['labels'] >= 0))
    F = []
    with torch.no_grad():
        for j in range(0, len(idx), 256):
            x = torch.from_numpy(X[idx[j:j + 256]].astype(np.float32))
            sp = grid((3000,), x.shape[0])
            c, f = encode(tokens_of(x, sp), sp)
            F.append(torch.cat([c, f.mean(1)], -1).numpy())
    return np.concatenate(F), I['labels'][idx]
t_probe = time.time()
Ftr, ytr = feats(mask_ft)
Fte, yte = feats(mask_test)
sc = StandardScaler().fit(Ftr)
clf = LogisticRegression(max_iter=2000, C=1.0).fit(sc.transform(Ftr), ytr)
yp = clf.predict(sc.transform(Fte))
res['probe'] = {'kappa': cohen_kappa_score(yte, yp), 'macro_f1': f1_score(yte, yp, average='macro'),
                'n_train': int(len(ytr)), 'n_test': int(len(yte)), 'probe_s': time.time() - t_probe}
res['total_s'] = time.time() - T0
print('PROBE', json.dumps(res['probe']))
json.dump(res, open(f'/tmp/research/results/{a.name}_s{a.seed}.json', 'w'), indent=1)
