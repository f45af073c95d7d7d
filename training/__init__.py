"""What fd.py and grpo.py share around their algorithm: the run (set-up, loop, evaluations, saves), one
step's mechanics (micro-batches, sums over processes, the optimizer step), the run folder (checkpoint),
FSDP2 sharding (shard) and live tracking (tracking)."""
