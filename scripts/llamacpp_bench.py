#!/usr/bin/env python3
"""The llama.cpp side of `skd bench student`: the same GGUF, system prompt and user prompts,
timed with and without reuse of the shared prefix's KV cache. Prints one JSON object.

Needs llama-cpp-python (`scripts/install-llama-cpp.sh` builds it for this machine).
usage: llamacpp_bench.py MODEL.gguf WORKLOAD.json THREADS [reuse-only]
WORKLOAD.json: {"system": str, "prompts": [str], "max_tokens": int}
"""
import json
import sys
import time

from llama_cpp import Llama


def run(llm, system, prompts, max_tokens, reuse):
    total = {"wall_s": 0.0, "prompt_tokens": 0, "completion_tokens": 0}
    for prompt in prompts:
        if not reuse:
            llm.reset()  # drop the KV cache: every request prefills the whole prompt
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        start = time.perf_counter()
        out = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, top_k=1)
        total["wall_s"] += time.perf_counter() - start
        total["prompt_tokens"] += out["usage"]["prompt_tokens"]
        total["completion_tokens"] += out["usage"]["completion_tokens"]
    return total


def main():
    model, workload_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(workload_path) as f:
        w = json.load(f)
    llm = Llama(model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    # Warm-up (page the weights in), not timed.
    llm.create_chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    llm.reset()
    result = {"with_prefix_reuse": run(llm, w["system"], w["prompts"], w["max_tokens"], True)}
    if not (len(sys.argv) > 4 and sys.argv[4] == "reuse-only"):
        result["without_prefix_reuse"] = run(llm, w["system"], w["prompts"], w["max_tokens"], False)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
