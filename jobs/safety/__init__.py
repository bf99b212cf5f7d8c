"""Safety and generation evals: RealToxicityPrompts, Red-Instruct (DangerousQA + CoU), AlpacaEval.

Each module reads its dataset's real file format, builds prompts, and turns generations into its
eval.json entry; the judged ones (Red-Instruct, AlpacaEval) are scored by jobs.judge.
"""
