"""Collect results/*.json into one markdown table (mean ± sd over seeds)."""
import glob, json, collections, numpy as np
rows = collections.defaultdict(list)
for f in sorted(glob.glob('/tmp/research/results/*.json')):
    r = json.load(open(f)); rows[r['args']['name']].append(r)
def ms(v):
    v = np.asarray(v, float)
    return f'{v.mean():.3f}' + (f' ± {v.std(ddof=1):.3f}' if len(v) > 1 else '')
print('| variant | seeds | pretext MSE / predict-zero (held-out, all pairs) | / best constant | dropped-target pairs / zero | probe kappa | probe macro-F1 | train s |')
print('|---|---|---|---|---|---|---|---|')
for name, rs in rows.items():
    comps = list(rs[0]['pretext_all'])
    z = '; '.join(f"{c}: {ms([r['pretext_all'][c]['ratio_zero'] for r in rs])}" for c in comps)
    cst = '; '.join(f"{c}: {ms([r['pretext_all'][c]['ratio_const'] for r in rs])}" for c in comps)
    d = '; '.join(f"{c}: {ms([r['pretext_dropped_tgt'][c]['ratio_zero'] for r in rs])}" for c in comps) if 'pretext_dropped_tgt' in rs[0] else '-'
    print(f"| {name} | {len(rs)} | {z} | {cst} | {d} | {ms([r['probe']['kappa'] for r in rs])} | {ms([r['probe']['macro_f1'] for r in rs])} | {ms([r['train_s'] for r in rs])[:5]} |")
