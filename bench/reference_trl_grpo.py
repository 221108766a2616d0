"""(Copied verbatim from shared/bench/baseline_trl_grpo.py so the comparison travels with the repo.)
Reference workload for the compass: a plain TRL GRPO script in the style of the seeds
(Countdown, format + equation rewards, prefilled <think>), timed step by step.
Usage: python baseline_trl_grpo.py MODEL_DIR OUT_JSON [steps] [gen_mode] [completions_per_step] [max_new_tokens]
MODEL_DIR: a transformers checkpoint with a chat template (e.g. SmolLM2-135M-Instruct made into one).
gen_mode: hf (default generate) | cb (transformers continuous batching) | static (static cache) |
          soft (hf + a tag-count reward and lr 2e-5)
Default workload: 64 completions per step (8 prompts x 8 generations), <=256 new tokens, bf16 on GPU.
On a CPU use a small one, e.g. 8 completions x 64 tokens (the default needs more than 24 GB there).
Prints one JSON line (median step time, rollout tokens/s, peak memory) and the per-step reward curves."""
import json, random, re, sys, time, ast, operator, tempfile
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

model_dir, out_json = sys.argv[1], sys.argv[2]
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 12
mode = sys.argv[4] if len(sys.argv) > 4 else "hf"
batch = int(sys.argv[5]) if len(sys.argv) > 5 else 64      # completions per step
max_len = int(sys.argv[6]) if len(sys.argv) > 6 else 256   # max new tokens
random.seed(0)

def make_task():
    while True:
        nums = [random.randint(1, 30) for _ in range(3)]
        a, b, c = nums
        ops = [(lambda x, y: x + y), (lambda x, y: x - y), (lambda x, y: x * y)]
        t = random.choice(ops)(random.choice(ops)(a, b), c)
        if 1 <= t <= 200:
            random.shuffle(nums)
            return nums, t

tok = AutoTokenizer.from_pretrained(model_dir)
rows = []
for _ in range(2000):
    nums, t = make_task()
    msgs = [{"role": "system", "content": "You are a helpful assistant. You first think about the reasoning process and then give the answer."},
            {"role": "user", "content": f"Using the numbers {nums}, create an equation that equals {t}. You can use + - * / and each number once. Show your work in <think> </think> tags and return the final equation in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."},
            {"role": "assistant", "content": "Let me solve this step by step.\n<think>"}]
    p = tok.apply_chat_template(msgs, tokenize=False, continue_final_message=True)
    rows.append({"prompt": p, "nums": nums, "target": t})
ds = Dataset.from_list(rows)

OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
def safe_eval(expr):
    def ev(n):
        if isinstance(n, ast.Expression): return ev(n.body)
        if isinstance(n, ast.BinOp) and type(n.op) in OPS: return OPS[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)): return n.value
        raise ValueError
    return ev(ast.parse(expr, mode="eval"))

def format_reward(completions, **kw):
    r = r"^([^<]*(?:<(?!/?think>)[^<]*)*)</think>\s*<answer>([\s\S]*?)</answer>\s*$"
    return [1.0 if re.search(r, c, re.S) else 0.0 for c in completions]

def equation_reward(completions, nums, target, **kw):
    out = []
    for c, ns, t in zip(completions, nums, target):
        m = re.search(r"<answer>(.*?)</answer>", c, re.S)
        try:
            eq = m.group(1).strip()
            used = [int(x) for x in re.findall(r"\d+", eq)]
            ok = sorted(used) == sorted(ns) and abs(safe_eval(eq) - t) < 1e-5
            out.append(1.0 if ok else 0.0)
        except Exception:
            out.append(0.0)
    return out

def tag_count_reward(completions, **kw):
    # partial credit per well-placed tag (the completion starts after a prefilled <think>)
    out = []
    for c in completions:
        s = 0.0
        s += 0.25 if c.count("</think>") == 1 else 0.0
        s += 0.25 if c.count("<answer>") == 1 else 0.0
        s += 0.25 if c.count("</answer>") == 1 else 0.0
        s += 0.25 if c.count("</think>") == 1 and c.count("<answer>") == 1 and c.find("</think>") < c.find("<answer>") else 0.0
        out.append(s)
    return out

CUDA = torch.cuda.is_available()
def sync():
    if CUDA: torch.cuda.synchronize()

class Timer(TrainerCallback):
    def __init__(self): self.t = []; self.logs = []
    def on_step_begin(self, *a, **k): sync(); self.t0 = time.perf_counter()
    def on_step_end(self, *a, **k): sync(); self.t.append(time.perf_counter() - self.t0)
    def on_log(self, args, state, control, logs=None, **k): self.logs.append(dict(logs or {}))

model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if CUDA else torch.float32, attn_implementation="sdpa")
extra = {}
if mode == "cb": extra["use_transformers_continuous_batching"] = True
if mode == "static": extra["cache_implementation"] = "static"
cfg = GRPOConfig(output_dir=tempfile.mkdtemp(prefix="grpo_ref_"), per_device_train_batch_size=batch, num_generations=8,
                 max_completion_length=max_len, max_steps=steps, logging_steps=1, learning_rate=5e-6,
                 beta=0.001, temperature=1.0, bf16=CUDA, use_cpu=not CUDA, report_to="none", save_strategy="no",
                 gradient_checkpointing=False, seed=0, **extra)
timer = Timer()
funcs = [format_reward, equation_reward] + ([tag_count_reward] if mode == "soft" else [])
if mode == "soft": cfg.learning_rate = 2e-5
tr = GRPOTrainer(model=model, processing_class=tok, reward_funcs=funcs,
                 args=cfg, train_dataset=ds, callbacks=[timer])
t0 = time.time(); tr.train(); wall = time.time() - t0
logs = [l for l in timer.logs if "reward" in l]
toks = [float(l.get("completions/mean_length", 0)) * batch for l in logs]
st = sorted(timer.t[2:]) if len(timer.t) > 3 else sorted(timer.t)
res = {"mode": mode, "steps": steps, "wall_s": wall, "step_s": timer.t,
       "median_step_s": st[len(st) // 2], "completion_tokens_per_step": toks,
       "rollout_tok_per_s_median": sorted([a / b for a, b in zip(toks[2:], timer.t[2:])] or [0])[max(0, (len(toks) - 2) // 2)],
       "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if CUDA else None,
       "format": [float(l.get("rewards/format_reward/mean", 0)) for l in logs],
       "equation": [float(l.get("rewards/equation_reward/mean", 0)) for l in logs],
       "tag_count": [float(l.get("rewards/tag_count_reward/mean", 0)) for l in logs],
       "mean_len": [float(l.get("completions/mean_length", 0)) for l in logs],
       "clipped": [float(l.get("completions/clipped_ratio", 0)) for l in logs]}
json.dump(res, open(out_json, "w"), indent=1)
print(json.dumps({k: v for k, v in res.items() if k in ("mode", "median_step_s", "rollout_tok_per_s_median", "peak_mem_gb", "wall_s")}))
print("format", [round(x, 2) for x in res["format"]])
print("equation", [round(x, 2) for x in res["equation"]])
print("tag_count", [round(x, 2) for x in res["tag_count"]])
print("mean_len", [round(x) for x in res["mean_len"]])
