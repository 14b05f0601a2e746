"""cldst: continual learning with dynamic sparse training.

Modules, one per concept:
  config       the flat run configuration (notebook parameters = CLI flags = run record)
  data         datasets (CIFAR-100, miniImageNet, the embedded synth100), task splits, device batches
  models       backbones (ResNet-18, VGG-like, MobileNetV2) with task heads
  sparse       masks: sparse init, drop/grow criteria, schedules, per-task masks, capacity
  train        the task-incremental training loop
  metrics      accuracy matrix -> ACC, BWT, FWT
  records      run directories, atomic writes, run ids
  experiments  the registry of paper artifacts and profiles
  sweep        executing many configurations through papermill, locally or with submitit
  collect      run records -> tidy tables
  analysis     tables and figures of the paper from collected runs
"""

__version__ = "0.1.0"
